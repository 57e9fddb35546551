package raftstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Grow 3 -> 5 with MemberAdd + --initial-cluster-state existing, then shrink
// back to 3, while a writer keeps writing through the whole change.
func TestMembershipGrowAndShrinkUnderLoad(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t, 90*time.Second)
	wctx, stopWriter := context.WithCancel(ctx)
	var acked atomic.Int64
	var failed atomic.Int64
	writerDone := make(chan struct{})
	cli := c.client(0, 1, 2)
	go func() {
		defer close(writerDone)
		for i := 0; wctx.Err() == nil; i++ {
			rctx, cancel := context.WithTimeout(wctx, 5*time.Second)
			_, err := cli.Put(rctx, fmt.Sprintf("load/%06d", i), "v")
			cancel()
			if err == nil {
				acked.Store(int64(i + 1))
			} else if wctx.Err() == nil {
				failed.Add(1)
			}
		}
	}()

	base := t.TempDir()
	initial := append([]Member{}, c.cfgs[0].InitialCluster...)
	for k := 3; k < 5; k++ {
		name := fmt.Sprintf("m%d", k)
		peer := "http://" + freeAddr(t)
		resp, err := cli.MemberAdd(ctx, []string{peer})
		if err != nil {
			t.Fatalf("member add %s: %v", name, err)
		}
		if resp.Member.ID != memberID(peer) {
			t.Fatalf("member add returned ID %x", resp.Member.ID)
		}
		initial = append(initial, Member{Name: name, PeerURL: peer})
		client := "http://" + freeAddr(t)
		cfg := Config{Name: name, DataDir: filepath.Join(base, name), ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
			ListenPeerURLs: []string{peer}, AdvertisePeerURL: peer, InitialCluster: append([]Member{}, initial...), InitialClusterState: "existing"}
		c.cfgs = append(c.cfgs, cfg)
		c.servers = append(c.servers, nil)
		c.start(k)
		nc := c.client(k)
		testPoll(t, 20*time.Second, func() error {
			g, err := nc.Get(ctx, "load/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return err
			}
			if g.Count < acked.Load()-5 {
				return fmt.Errorf("new member has %d keys, %d acked", g.Count, acked.Load())
			}
			return nil
		})
	}
	// New members publish their name and client URLs through the log.
	testPoll(t, 10*time.Second, func() error {
		ml, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		if len(ml.Members) != 5 {
			return fmt.Errorf("%d members listed, want 5", len(ml.Members))
		}
		for _, m := range ml.Members {
			if m.Name == "" || len(m.ClientURLs) == 0 {
				return fmt.Errorf("member %x has not published its name and client URLs: %+v", m.ID, m)
			}
		}
		return nil
	})
	// Shrink: remove the two new members.
	for k := 3; k < 5; k++ {
		if _, err := cli.MemberRemove(ctx, c.servers[k].id); err != nil {
			t.Fatalf("member remove m%d: %v", k, err)
		}
		c.stop(k)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("member list after shrinking: %v %v", ml, err)
	}
	before := acked.Load()
	testPoll(t, 10*time.Second, func() error {
		if acked.Load() < before+20 {
			return fmt.Errorf("writer stalled at %d", acked.Load())
		}
		return nil
	})
	stopWriter()
	<-writerDone
	if failed.Load() > 5 {
		t.Fatalf("%d writes failed during membership changes", failed.Load())
	}
	n := acked.Load()
	g, err := cli.Get(ctx, "load/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || g.Count < n {
		t.Fatalf("%d acknowledged writes, %d keys present (err %v)", n, g.Count, err)
	}
}
