package raftstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestLeaseExpiryRemovesKeysOnEveryMember(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t, 40*time.Second)
	leader := c.waitLeader(5 * time.Second)
	follower := c.client((leader + 1) % 3)
	lease, err := follower.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follower.Put(ctx, "ephemeral", "v", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	ttl, err := follower.TimeToLive(ctx, lease.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 2 || len(ttl.Keys) != 1 || ttl.TTL <= 0 {
		t.Fatalf("time to live: %+v %v", ttl, err)
	}
	granted := time.Now()
	var revs []int64
	for i := range c.servers {
		cli := c.client(i)
		testPoll(t, 10*time.Second, func() error {
			g, err := cli.Get(ctx, "ephemeral", clientv3.WithSerializable())
			if err != nil {
				return err
			}
			if len(g.Kvs) != 0 {
				return fmt.Errorf("member %d still has the key", i)
			}
			revs = append(revs, g.Header.Revision)
			return nil
		})
	}
	if el := time.Since(granted); el < 1500*time.Millisecond {
		t.Fatalf("key gone after %s, before its 2 s TTL", el)
	}
	if _, err := follower.Put(ctx, "x", "y", clientv3.WithLease(lease.ID)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("put on expired lease: err %v", err)
	}
	// Every member deleted the key at the same revision: the delete event is
	// the same on all of them.
	var delRev int64
	for i := range c.servers {
		wr := <-c.client(i).Watch(ctx, "ephemeral", clientv3.WithRev(1), clientv3.WithFilterPut())
		if len(wr.Events) != 1 {
			t.Fatalf("member %d: %d delete events", i, len(wr.Events))
		}
		if delRev == 0 {
			delRev = wr.Events[0].Kv.ModRevision
		} else if wr.Events[0].Kv.ModRevision != delRev {
			t.Fatalf("member %d deleted at %d, another at %d", i, wr.Events[0].Kv.ModRevision, delRev)
		}
	}
}

func TestLeaseKeepAliveKeepsKeys(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t, 40*time.Second)
	leader := c.waitLeader(5 * time.Second)
	cli := c.client((leader + 2) % 3)
	lease, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	cli.Put(ctx, "kept", "v", clientv3.WithLease(lease.ID))
	ka, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		select {
		case r := <-ka:
			if r == nil {
				t.Fatal("keep-alive channel closed")
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no keep-alive response for 3 s")
		}
	}
	g, err := cli.Get(ctx, "kept")
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("key lost despite keep-alive: %v %v", g, err)
	}
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("lease list: %v %v", leases, err)
	}
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	g, _ = cli.Get(ctx, "kept")
	if len(g.Kvs) != 0 {
		t.Fatal("key survived revoke")
	}
}
