package raftstore

import (
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// collect reads events from wch until n arrived or timeout.
func collect(t *testing.T, wch clientv3.WatchChan, n int, timeout time.Duration) []*clientv3.Event {
	t.Helper()
	var out []*clientv3.Event
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(out), n)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch error after %d events: %v", len(out), err)
			}
			out = append(out, wr.Events...)
		case <-deadline:
			t.Fatalf("got %d of %d events within %s", len(out), n, timeout)
		}
	}
	return out
}

func TestWatchFromPastRevisionPrefixAndFilters(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t, 30*time.Second)
	w := c.client(0)
	first, err := w.Put(ctx, "w/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	w.Put(ctx, "other", "x")
	w.Put(ctx, "w/b", "2")
	w.Put(ctx, "w/a", "3")
	w.Delete(ctx, "w/b")

	// From revision 1 on a follower: the whole history of the prefix, with prev_kv.
	watcher := c.client(2)
	evs := collect(t, watcher.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(1), clientv3.WithPrevKV()), 4, 10*time.Second)
	want := []struct {
		typ mvccpb.Event_EventType
		key string
		val string
		rev int64
	}{
		{mvccpb.PUT, "w/a", "1", first.Header.Revision},
		{mvccpb.PUT, "w/b", "2", first.Header.Revision + 2},
		{mvccpb.PUT, "w/a", "3", first.Header.Revision + 3},
		{mvccpb.DELETE, "w/b", "", first.Header.Revision + 4},
	}
	for i, e := range evs {
		if e.Type != want[i].typ || string(e.Kv.Key) != want[i].key || string(e.Kv.Value) != want[i].val || e.Kv.ModRevision != want[i].rev {
			t.Fatalf("event %d = %v %s=%s@%d, want %+v", i, e.Type, e.Kv.Key, e.Kv.Value, e.Kv.ModRevision, want[i])
		}
	}
	if evs[2].PrevKv == nil || string(evs[2].PrevKv.Value) != "1" || evs[3].PrevKv == nil || string(evs[3].PrevKv.Value) != "2" {
		t.Fatalf("prev_kv missing or wrong: %v / %v", evs[2].PrevKv, evs[3].PrevKv)
	}
	// Filters: deletes only.
	dels := collect(t, watcher.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(1), clientv3.WithFilterPut()), 1, 10*time.Second)
	if dels[0].Type != mvccpb.DELETE {
		t.Fatalf("filter put: got %v", dels[0].Type)
	}
	// Live events and a progress request.
	live := watcher.Watch(ctx, "live", clientv3.WithProgressNotify())
	if err := watcher.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	w.Put(ctx, "live", "now")
	got := collect(t, live, 1, 10*time.Second)
	if string(got[0].Kv.Value) != "now" {
		t.Fatalf("live event %v", got[0])
	}
}

func TestWatchCompactedRevisionIsCancelled(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	ctx := ctxT(t, 20*time.Second)
	cli := c.client(0)
	var last int64
	for i := 0; i < 5; i++ {
		r, err := cli.Put(ctx, "k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	if _, err := cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(ctx, "k", clientv3.WithRev(2))
	select {
	case wr := <-wch:
		if wr.CompactRevision != last || !wr.Canceled {
			t.Fatalf("watch at compacted rev: %+v, want canceled with compact revision %d", wr, last)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cancel for a watch on a compacted revision")
	}
}

// A watcher whose member dies resumes on another member from last+1 and sees
// every event exactly once, in order.
func TestWatchResumeAfterServingMemberKilled(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t, 60*time.Second)
	leader := c.waitLeader(5 * time.Second)
	serving := (leader + 1) % 3
	other := (leader + 2) % 3
	writer := c.client(leader)
	const total = 60
	done := make(chan error, 1)
	go func() {
		for i := 0; i < total; i++ {
			if _, err := writer.Put(ctx, fmt.Sprintf("r/%03d", i), fmt.Sprint(i)); err != nil {
				done <- err
				return
			}
			if i == total/2 {
				// Let the watcher see the first half before its member dies.
				time.Sleep(50 * time.Millisecond)
			}
		}
		done <- nil
	}()
	wcli := c.client(serving)
	first := collect(t, wcli.Watch(ctx, "r/", clientv3.WithPrefix(), clientv3.WithRev(1)), 10, 20*time.Second)
	c.stop(serving)
	lastRev := first[len(first)-1].Kv.ModRevision
	rest := collect(t, c.client(other).Watch(ctx, "r/", clientv3.WithPrefix(), clientv3.WithRev(lastRev+1)), total-len(first), 30*time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	all := append(first, rest...)
	for i, e := range all {
		if string(e.Kv.Key) != fmt.Sprintf("r/%03d", i) {
			t.Fatalf("event %d is %s: gap, duplicate or reordering", i, e.Kv.Key)
		}
		if i > 0 && e.Kv.ModRevision <= all[i-1].Kv.ModRevision {
			t.Fatalf("revisions not increasing at %d", i)
		}
	}
}
