package raftstore

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestKVSemantics(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("members=%d", n), func(t *testing.T) {
			c := newTestCluster(t, n, nil)
			writer := c.client(0)
			reader := c.client(n - 1) // a follower when n > 1, most likely
			ctx := ctxT(t, 30*time.Second)

			r1, err := writer.Put(ctx, "foo", "bar")
			if err != nil {
				t.Fatal(err)
			}
			// Linearizable read on another member sees the acknowledged write.
			g, err := reader.Get(ctx, "foo")
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "bar" || g.Kvs[0].ModRevision != r1.Header.Revision ||
				g.Kvs[0].CreateRevision != r1.Header.Revision || g.Kvs[0].Version != 1 {
				t.Fatalf("get foo = %+v, want bar at rev %d version 1", g.Kvs, r1.Header.Revision)
			}
			r2, err := writer.Put(ctx, "foo", "baz", clientv3.WithPrevKV())
			if err != nil {
				t.Fatal(err)
			}
			if r2.Header.Revision != r1.Header.Revision+1 || r2.PrevKv == nil || string(r2.PrevKv.Value) != "bar" {
				t.Fatalf("second put: rev %d prev %v, want rev %d prev bar", r2.Header.Revision, r2.PrevKv, r1.Header.Revision+1)
			}
			// Reads at a past revision.
			old, err := reader.Get(ctx, "foo", clientv3.WithRev(r1.Header.Revision))
			if err != nil || len(old.Kvs) != 1 || string(old.Kvs[0].Value) != "bar" {
				t.Fatalf("get --rev: %v %v", old, err)
			}
			// A delete of a missing key does not bump the revision.
			d, err := writer.Delete(ctx, "missing")
			if err != nil || d.Deleted != 0 || d.Header.Revision != r2.Header.Revision {
				t.Fatalf("delete missing: %+v %v (rev want %d)", d, err, r2.Header.Revision)
			}
			for i := 0; i < 5; i++ {
				if _, err := writer.Put(ctx, fmt.Sprintf("dir/k%d", i), strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
			}
			p, err := reader.Get(ctx, "dir/", clientv3.WithPrefix(), clientv3.WithLimit(2))
			if err != nil || len(p.Kvs) != 2 || !p.More || p.Count != 5 {
				t.Fatalf("prefix limit 2: kvs=%d more=%v count=%d err=%v", len(p.Kvs), p.More, p.Count, err)
			}
			ko, err := reader.Get(ctx, "dir/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable())
			if err != nil || len(ko.Kvs) != 5 || len(ko.Kvs[0].Value) != 0 {
				t.Fatalf("keys-only serializable: %v %v", ko, err)
			}
			co, err := reader.Get(ctx, "dir/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil || co.Count != 5 || len(co.Kvs) != 0 {
				t.Fatalf("count-only: %v %v", co, err)
			}
			fk, err := reader.Get(ctx, "dir/k3", clientv3.WithFromKey())
			if err != nil || len(fk.Kvs) != 3 { // dir/k3 dir/k4 foo
				t.Fatalf("from-key: %v %v", fk, err)
			}
			del, err := writer.Delete(ctx, "dir/", clientv3.WithPrefix(), clientv3.WithPrevKV())
			if err != nil || del.Deleted != 5 || len(del.PrevKvs) != 5 {
				t.Fatalf("delete prefix: %+v %v", del, err)
			}
			// Compaction: the compacted revision is gone, later ones remain.
			if _, err := writer.Compact(ctx, r2.Header.Revision); err != nil {
				t.Fatal(err)
			}
			_, err = reader.Get(ctx, "foo", clientv3.WithRev(r1.Header.Revision))
			if !errors.Is(err, rpctypes.ErrCompacted) {
				t.Fatalf("get compacted rev: err %v, want %v", err, rpctypes.ErrCompacted)
			}
			_, err = reader.Get(ctx, "foo", clientv3.WithRev(del.Header.Revision+100))
			if !errors.Is(err, rpctypes.ErrFutureRev) {
				t.Fatalf("get future rev: err %v, want %v", err, rpctypes.ErrFutureRev)
			}
			now, err := reader.Get(ctx, "foo", clientv3.WithRev(r2.Header.Revision))
			if err != nil || len(now.Kvs) != 1 || string(now.Kvs[0].Value) != "baz" {
				t.Fatalf("get at compact rev: %v %v", now, err)
			}
		})
	}
}

func TestTxnCompareAndSwapUnderContention(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t, 60*time.Second)
	clients := []*clientv3.Client{c.client(0), c.client(1), c.client(2)}
	if _, err := clients[0].Put(ctx, "counter", "0"); err != nil {
		t.Fatal(err)
	}
	const workers, perWorker = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var attempts, conflicts sync.Map
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cli := clients[w%len(clients)]
			for done := 0; done < perWorker; {
				g, err := cli.Get(ctx, "counter")
				if err != nil {
					errs <- err
					return
				}
				kv := g.Kvs[0]
				v, _ := strconv.Atoi(string(kv.Value))
				resp, err := cli.Txn(ctx).
					If(clientv3.Compare(clientv3.ModRevision("counter"), "=", kv.ModRevision)).
					Then(clientv3.OpPut("counter", strconv.Itoa(v+1))).
					Else(clientv3.OpGet("counter")).
					Commit()
				if err != nil {
					errs <- err
					return
				}
				attempts.Store(fmt.Sprint(w, done), true)
				if resp.Succeeded {
					done++
				} else {
					conflicts.Store(fmt.Sprint(w, done, time.Now().UnixNano()), true)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	g, err := clients[1].Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(g.Kvs[0].Value); got != strconv.Itoa(workers*perWorker) {
		t.Fatalf("counter = %s after %d successful CAS increments: updates lost or duplicated", got, workers*perWorker)
	}
	if g.Kvs[0].Version != workers*perWorker+1 {
		t.Fatalf("counter version = %d, want %d", g.Kvs[0].Version, workers*perWorker+1)
	}
}

func TestTxnShapes(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	cli := c.client(0)
	ctx := ctxT(t, 20*time.Second)
	// kube-apiserver's create: mod_revision == 0 -> put.
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("/registry/a"), "=", 0)).
		Then(clientv3.OpPut("/registry/a", "1")).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("create txn: %v %v", resp, err)
	}
	// Nested txn and every compare target.
	resp, err = cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value("/registry/a"), "=", "1"),
		clientv3.Compare(clientv3.Version("/registry/a"), "=", 1),
		clientv3.Compare(clientv3.CreateRevision("/registry/a"), ">", 0),
		clientv3.Compare(clientv3.LeaseValue("/registry/a"), "=", 0),
	).Then(clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("/registry/b", "2")}, nil), clientv3.OpGet("/registry/a")).Commit()
	if err != nil || !resp.Succeeded || len(resp.Responses) != 2 {
		t.Fatalf("nested txn: %v %v", resp, err)
	}
	// Duplicate keys in one branch are rejected.
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("x", "1"), clientv3.OpPut("x", "2")).Commit()
	if !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Fatalf("duplicate keys: err %v", err)
	}
	// Too many operations.
	var ops []clientv3.Op
	for i := 0; i < 129; i++ {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("k%d", i), "v"))
	}
	_, err = cli.Txn(ctx).Then(ops...).Commit()
	if !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("129 ops: err %v", err)
	}
	// A failed compare with no else branch does not bump the revision.
	before, _ := cli.Get(ctx, "x")
	resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("/registry/a"), "=", "nope")).Then(clientv3.OpPut("y", "1")).Commit()
	if err != nil || resp.Succeeded || resp.Header.Revision != before.Header.Revision {
		t.Fatalf("failed txn: %v %v", resp, err)
	}
}

func TestBadInput(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	cli := c.client(1)
	ctx := ctxT(t, 30*time.Second)
	_, err := cli.Put(ctx, "big", strings.Repeat("x", 2<<20))
	if err == nil || !strings.Contains(err.Error(), "too large") && !strings.Contains(err.Error(), "larger than max") {
		t.Fatalf("oversized value: err %v, want request too large", err)
	}
	if _, err := cli.Put(ctx, "", "v"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("empty key: err %v", err)
	}
	if _, err := cli.Put(ctx, "k", "v", clientv3.WithLease(12345)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("unknown lease: err %v", err)
	}
	if _, err := cli.Revoke(ctx, 12345); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("revoke unknown lease: err %v", err)
	}
	if _, err := cli.Put(ctx, "k", "", clientv3.WithIgnoreValue()); !errors.Is(err, rpctypes.ErrKeyNotFound) {
		t.Fatalf("ignore_value on missing key: err %v", err)
	}
	// Garbage on every peer port: the members must drop it and keep serving.
	for _, cfg := range c.cfgs {
		host, _ := parseURLHost(cfg.AdvertisePeerURL)
		for _, junk := range []string{"GET / HTTP/1.1\r\n\r\n", "SYNdR\xff\xff\xff\xff\xff\xff\xff\xff garbage", strings.Repeat("\x00", 4096)} {
			conn, err := net.DialTimeout("tcp", host, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conn.Write([]byte(junk))
			conn.Close()
		}
	}
	if _, err := cli.Put(ctx, "after-garbage", "ok"); err != nil {
		t.Fatalf("put after garbage on peer ports: %v", err)
	}
	for i := range c.servers {
		g, err := c.client(i).Get(ctx, "after-garbage")
		if err != nil || len(g.Kvs) != 1 {
			t.Fatalf("member %d after garbage: %v %v", i, g, err)
		}
	}
}

func TestMalformedForwardIsRefusedNotReplicated(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	follower := c.servers[(leader+1)%3]
	ctx := ctxT(t, 10*time.Second)
	addr, _ := c.servers[leader].raft.LeaderWithID()
	for _, cmd := range [][]byte{{byte(msgPut), 0xff, 0xff, 0xff}, {0x7f, 1, 2}, {}} {
		if _, err := follower.peers.propose(ctx, string(addr), cmd); err == nil {
			t.Fatalf("leader accepted malformed command %x", cmd)
		}
	}
	if _, err := c.client(0).Put(ctx, "still", "alive"); err != nil {
		t.Fatalf("cluster after malformed forwards: %v", err)
	}
}
