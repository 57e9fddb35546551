package raftstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// testCluster is a real multi-member raft cluster on loopback in this process:
// real TCP peer ports, real raft-boltdb logs in temp dirs, real gRPC.
type testCluster struct {
	t       testing.TB
	cfgs    []Config
	servers []*Server
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SYNOD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestCluster starts n members; tweak may adjust every member's Config.
func newTestCluster(t testing.TB, n int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	var initial []Member
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("m%d", i)
		peer := "http://" + freeAddr(t)
		initial = append(initial, Member{Name: name, PeerURL: peer})
	}
	base := t.TempDir()
	for i := 0; i < n; i++ {
		client := "http://" + freeAddr(t)
		cfg := Config{
			Name:                initial[i].Name,
			DataDir:             filepath.Join(base, initial[i].Name),
			ListenClientURLs:    []string{client},
			AdvertiseClientURLs: []string{client},
			ListenPeerURLs:      []string{initial[i].PeerURL},
			AdvertisePeerURL:    initial[i].PeerURL,
			InitialCluster:      initial,
		}
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.servers = make([]*Server, n)
	for i := range c.cfgs {
		c.start(i)
	}
	t.Cleanup(c.close)
	c.waitLeader(10 * time.Second)
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	s, err := Open(c.cfgs[i], testLogger(c.t).With("m", i))
	if err != nil {
		c.t.Fatalf("start member %d: %v", i, err)
	}
	c.servers[i] = s
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	if c.servers[i] == nil {
		return
	}
	if err := c.servers[i].Close(); err != nil {
		c.t.Logf("stop member %d: %v", i, err)
	}
	c.servers[i] = nil
}

func (c *testCluster) close() {
	for i := range c.servers {
		c.stop(i)
	}
}

// waitLeader returns the index of the leader once all running members agree.
func (c *testCluster) waitLeader(timeout time.Duration) int {
	c.t.Helper()
	var leader int
	testPoll(c.t, timeout, func() error {
		leader = -1
		var id string
		for i, s := range c.servers {
			if s == nil {
				continue
			}
			_, lid := s.raft.LeaderWithID()
			if lid == "" {
				return fmt.Errorf("member %d sees no leader", i)
			}
			if id != "" && string(lid) != id {
				return fmt.Errorf("members disagree on the leader")
			}
			id = string(lid)
			if serverID(s.id) == lid {
				leader = i
			}
		}
		if leader < 0 {
			return fmt.Errorf("leader is not a running member")
		}
		return nil
	})
	return leader
}

func (c *testCluster) endpoint(i int) string { return c.cfgs[i].ListenClientURLs[0] }

// client returns an etcd client connected to the given members only.
func (c *testCluster) client(members ...int) *clientv3.Client {
	c.t.Helper()
	var eps []string
	for _, i := range members {
		eps = append(eps, c.endpoint(i))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, DialOptions: []grpc.DialOption{grpc.WithBlock()}, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// testPoll retries f until it returns nil or timeout passes.
func testPoll(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
