package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Grow a 3-master cluster to 5 with `synod member add` and masters started
// with --initial-cluster-state existing, then shrink it back with `synod
// member remove`, while a client keeps writing; nothing acknowledged is lost.
func TestMemberAddRemoveWithCLI(t *testing.T) {
	c := startCluster(t, 3)
	eps := c.Endpoints()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	var acked atomic.Int64
	var failures atomic.Int64
	wctx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			rctx, rcancel := context.WithTimeout(wctx, 3*time.Second)
			_, err := cli.Put(rctx, fmt.Sprintf("grow/%06d", i), "v")
			rcancel()
			if err == nil {
				acked.Store(int64(i + 1))
			} else if wctx.Err() == nil {
				failures.Add(1)
			}
		}
	}()

	dir := t.TempDir()
	idRE := regexp.MustCompile(`Member ([0-9a-f]+) added`)
	clusterRE := regexp.MustCompile(`ETCD_INITIAL_CLUSTER="([^"]+)"`)
	var added []string
	for _, name := range []string{"m4", "m5"} {
		peer := "http://" + freePort(t)
		out, code := runSynod(t, "member", "add", name, "--peer-urls", peer, "--endpoints", strings.Join(eps, ","))
		if code != 0 {
			t.Fatalf("member add %s: exit %d: %s", name, code, out)
		}
		id, initial := idRE.FindStringSubmatch(out), clusterRE.FindStringSubmatch(out)
		if id == nil || initial == nil {
			t.Fatalf("member add output lacks the ID or ETCD_INITIAL_CLUSTER:\n%s", out)
		}
		added = append(added, id[1])
		client := "http://" + freePort(t)
		dd := filepath.Join(dir, name)
		startMasterProcess(t, dd+".log", "--name", name, "--data-dir", dd, "--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", initial[1], "--initial-cluster-state", "existing")
		// The new member catches up and serves reads of what was acknowledged.
		nc, _ := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		deadline := time.Now().Add(30 * time.Second)
		for {
			want := acked.Load()
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			g, err := nc.Get(rctx, "grow/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			rcancel()
			if err == nil && g.Count >= want {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(dd + ".log")
				t.Fatalf("new member %s never caught up (err %v); its log:\n%s", name, err, log)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// ...and publishes its name, as `synod member list` shows.
		deadline = time.Now().Add(20 * time.Second)
		for {
			ml, err := nc.MemberList(ctx)
			named := err == nil
			if err == nil {
				for _, m := range ml.Members {
					if m.Name == "" {
						named = false
					}
				}
			}
			if named {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %s never published its name: %v %v", name, ml, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		nc.Close()
	}
	out, code := runSynod(t, "member", "list", "--endpoints", strings.Join(eps, ","))
	if code != 0 || !strings.Contains(out, "m4") || !strings.Contains(out, "m5") {
		t.Fatalf("member list after growing: exit %d\n%s", code, out)
	}
	for _, id := range added {
		if out, code := runSynod(t, "member", "remove", id, "--endpoints", strings.Join(eps, ",")); code != 0 {
			t.Fatalf("member remove %s: exit %d: %s", id, code, out)
		}
	}
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("member list after shrinking: %v %v", ml, err)
	}
	before := acked.Load()
	deadline := time.Now().Add(10 * time.Second)
	for acked.Load() < before+50 {
		if time.Now().After(deadline) {
			t.Fatalf("writes stalled after shrinking (at %d)", acked.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopWriter()
	wg.Wait()
	g, err := cli.Get(ctx, "grow/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || g.Count < acked.Load() {
		t.Fatalf("%d writes acknowledged, %d present (err %v)", acked.Load(), g.Count, err)
	}
	t.Logf("%d writes acknowledged through grow 3->5 and shrink 5->3; %d failed", acked.Load(), failures.Load())
	if failures.Load() > 3 {
		t.Fatalf("%d writes failed during membership changes", failures.Load())
	}
}
