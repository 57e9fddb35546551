package mvcc

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestCompact(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "1", 0) // 2
	mustPut(t, s, "b", "1", 0) // 3
	mustPut(t, s, "a", "2", 0) // 4
	mustDelete(t, s, "b", "")  // 5
	mustPut(t, s, "c", "1", 0) // 6
	mustDelete(t, s, "c", "")  // 7
	mustPut(t, s, "a", "3", 0) // 8

	before := map[int64]string{}
	for rev := int64(1); rev <= s.Rev(); rev++ {
		before[rev] = allKVs(t, s, rev)
	}
	wantErr(t, s.Compact(9), ErrFutureRev)
	if err := s.Compact(5); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.Compact(5), ErrCompacted)
	wantErr(t, s.Compact(4), ErrCompacted)
	if s.Rev() != 8 || s.CompactRev() != 5 {
		t.Fatalf("rev %d compact %d", s.Rev(), s.CompactRev())
	}
	for rev := int64(1); rev <= s.Rev(); rev++ {
		resp, err := s.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		if rev < 5 {
			wantErr(t, err, ErrCompacted)
			continue
		}
		if err != nil || kvsString(resp.Kvs) != before[rev] {
			t.Fatalf("at %d: %v %v, want %s", rev, kvsString(resp.Kvs), err, before[rev])
		}
	}
	// b's history ended in a tombstone at or before 5: it is gone entirely.
	if h := s.get([]byte("b")); h != nil {
		t.Fatalf("b still has history %v", h.entries)
	}
	if h := s.get([]byte("a")); len(h.entries) != 2 {
		t.Fatalf("a keeps %d revisions, want 2", len(h.entries))
	}
	// Compacting everything leaves only live keys.
	if err := s.Compact(8); err != nil {
		t.Fatal(err)
	}
	if s.tree.Len() != 1 || len(s.events) != 0 {
		t.Fatalf("after full compaction: %d keys, %d events", s.tree.Len(), len(s.events))
	}
	if got := allKVs(t, s, 8); got != before[8] {
		t.Fatalf("at 8 after full compaction: %s", got)
	}
}

func TestLeases(t *testing.T) {
	s := New()
	wantErr(t, s.LeaseGrant(0, 5), ErrInvalidLeaseID)
	if err := s.LeaseGrant(2, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.LeaseGrant(1, 60); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.LeaseGrant(1, 60), ErrLeaseExists)
	mustPut(t, s, "y", "1", 1) // 2
	mustPut(t, s, "x", "1", 1) // 3
	mustPut(t, s, "z", "1", 1) // 4
	mustPut(t, s, "z", "2", 2) // 5: moves z to lease 2
	mustPut(t, s, "w", "1", 1) // 6
	mustDelete(t, s, "w", "")  // 7: detaches w

	ttl, keys, err := s.LeaseInfo(1)
	if err != nil || ttl != 60 || len(keys) != 2 || string(keys[0]) != "x" || string(keys[1]) != "y" {
		t.Fatalf("lease 1: %d %q %v", ttl, keys, err)
	}
	if ls := s.Leases(); len(ls) != 2 || ls[0] != (Lease{ID: 1, TTL: 60}) || ls[1] != (Lease{ID: 2, TTL: 5}) {
		t.Fatalf("leases %v", ls)
	}
	if err := s.LeaseRevoke(1); err != nil {
		t.Fatal(err)
	}
	if s.Rev() != 8 {
		t.Fatalf("revoke: rev %d, want 8", s.Rev())
	}
	evs, _, _ := s.Events(8, nil, []byte{0}, 0)
	if got := eventsString(evs); got != "DELETE x=@8 prev=1; DELETE y=@8 prev=1" {
		t.Fatalf("revoke events: %s", got)
	}
	wantErr(t, s.LeaseRevoke(1), ErrLeaseNotFound)
	if _, _, err := s.LeaseInfo(1); err == nil {
		t.Fatal("lease 1 still exists")
	}
	if got := allKVs(t, s, 0); got != "z=2@4/5/2/2" {
		t.Fatalf("after revoke: %s", got)
	}
}

func TestEvents(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "1", 0)  // 2
	mustPut(t, s, "b1", "1", 0) // 3
	if _, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("b2", "1"), putOp("c", "1"), putOp("b3", "1")}}); err != nil {
		t.Fatal(err) // 4
	}
	mustPut(t, s, "a", "2", 0)    // 5
	mustDelete(t, s, "b", "c")    // 6: b1, b2, b3
	mustPut(t, s, "b1", "new", 0) // 7

	tests := []struct {
		name     string
		from     int64
		key, end string
		limit    int
		want     string
		wnext    int64
	}{
		{"single key", 1, "a", "", 0, "PUT a=1@2 prev=-; PUT a=2@5 prev=1", 8},
		{"prefix", 4, "b", "c", 0, "PUT b2=1@4 prev=-; PUT b3=1@4 prev=-; DELETE b1=@6 prev=1; DELETE b2=@6 prev=1; DELETE b3=@6 prev=1; PUT b1=new@7 prev=-", 8},
		{"from key", 5, "b2", "\x00", 0, "DELETE b2=@6 prev=1; DELETE b3=@6 prev=1", 8},
		{"limit ends at revision", 2, "\x00", "\x00", 2, "PUT a=1@2 prev=-; PUT b1=1@3 prev=-", 4},
		{"limit does not split", 3, "\x00", "\x00", 2, "PUT b1=1@3 prev=-; PUT b2=1@4 prev=-; PUT c=1@4 prev=-; PUT b3=1@4 prev=-", 5},
		{"limit with filter", 6, "b1", "", 1, "DELETE b1=@6 prev=1", 7},
		{"caught up", 8, "", "\x00", 0, "", 8},
		{"future", 20, "", "\x00", 0, "", 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, next, err := s.Events(tt.from, []byte(tt.key), []byte(tt.end), tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := eventsString(evs); got != tt.want || next != tt.wnext {
				t.Fatalf("got %q next %d\nwant %q next %d", got, next, tt.want, tt.wnext)
			}
		})
	}

	// Events are fresh structs: clearing PrevKv does not affect the log.
	evs, _, _ := s.Events(5, []byte("a"), nil, 0)
	evs[0].PrevKv = nil
	if evs, _, _ := s.Events(5, []byte("a"), nil, 0); evs[0].PrevKv == nil {
		t.Fatal("event log was modified through a returned event")
	}

	if err := s.Compact(4); err != nil {
		t.Fatal(err)
	}
	for _, from := range []int64{0, 3, 4} {
		_, _, err := s.Events(from, nil, []byte{0}, 0)
		wantErr(t, err, ErrCompacted)
	}
	evs, next, err := s.Events(5, nil, []byte{0}, 0)
	if err != nil || len(evs) != 5 || next != 8 {
		t.Fatalf("after compaction: %s next %d %v", eventsString(evs), next, err)
	}
}

func TestChanged(t *testing.T) {
	s := New()
	ch := s.Changed()
	if ch2 := s.Changed(); ch2 != ch {
		t.Fatal("Changed returned different channels without a change")
	}
	if err := s.LeaseGrant(1, 1); err != nil {
		t.Fatal(err)
	}
	mustDelete(t, s, "none", "")
	select {
	case <-ch:
		t.Fatal("closed without a revision change")
	default:
	}
	mustPut(t, s, "a", "1", 0)
	select {
	case <-ch:
	default:
		t.Fatal("not closed after a put")
	}
	if s.Changed() == ch {
		t.Fatal("no fresh channel after close")
	}
}
