package mvcc

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestRevisionArithmetic(t *testing.T) {
	s := New()
	steps := []struct {
		name string
		do   func() (int64, error) // returns the response header revision
		wrev int64
	}{
		{"put", func() (int64, error) {
			r, err := s.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("1")})
			return r.Header.Revision, err
		}, 2},
		{"put again", func() (int64, error) {
			r, err := s.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("2")})
			return r.Header.Revision, err
		}, 3},
		{"delete missing", func() (int64, error) {
			r, err := s.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("zz")})
			return r.Header.Revision, err
		}, 3},
		{"range", func() (int64, error) {
			r, err := s.Range(&pb.RangeRequest{Key: []byte("a")})
			return r.Header.Revision, err
		}, 3},
		{"failed txn without else", func() (int64, error) {
			r, err := s.Txn(&pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("a", pb.Compare_EQUAL, 7)}, Success: []*pb.RequestOp{putOp("b", "x")}})
			return r.Header.Revision, err
		}, 3},
		{"txn with two puts", func() (int64, error) {
			r, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "x"), putOp("c", "y")}})
			return r.Header.Revision, err
		}, 4},
		{"txn deleting nothing", func() (int64, error) {
			r, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("q", "r")}})
			return r.Header.Revision, err
		}, 4},
		{"delete range", func() (int64, error) {
			r, err := s.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})
			if err == nil && r.Deleted != 2 {
				t.Errorf("deleted %d, want 2", r.Deleted)
			}
			return r.Header.Revision, err
		}, 5},
		{"compact", func() (int64, error) { return s.Rev(), s.Compact(3) }, 5},
		{"revoke lease without keys", func() (int64, error) {
			if err := s.LeaseGrant(1, 10); err != nil {
				return 0, err
			}
			return s.Rev(), s.LeaseRevoke(1)
		}, 5},
	}
	if s.Rev() != 1 || s.CompactRev() != 0 {
		t.Fatalf("new store rev %d compact %d, want 1 0", s.Rev(), s.CompactRev())
	}
	for _, st := range steps {
		rev, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if rev != st.wrev || s.Rev() != st.wrev {
			t.Fatalf("%s: header rev %d, store rev %d, want %d", st.name, rev, s.Rev(), st.wrev)
		}
	}
	// Both txn puts share revision 4 with sub-revisions 0 and 1.
	evs, _, err := s.Events(4, []byte("b"), []byte("d"), 1) // limit 1 must not split revision 4
	if err != nil || len(evs) != 2 || evs[0].Kv.ModRevision != 4 || evs[1].Kv.ModRevision != 4 {
		t.Fatalf("events at 4: %v %v", eventsString(evs), err)
	}
}

func TestVersionsAcrossRecreate(t *testing.T) {
	s := New()
	mustPut(t, s, "k", "v1", 0) // 2
	mustPut(t, s, "k", "v2", 0) // 3
	mustDelete(t, s, "k", "")   // 4
	mustPut(t, s, "k", "v3", 0) // 5
	mustPut(t, s, "k", "v4", 0) // 6
	tests := []struct {
		rev  int64
		want string
	}{
		{1, ""},
		{2, "k=v1@2/2/1/0"},
		{3, "k=v2@2/3/2/0"},
		{4, ""},
		{5, "k=v3@5/5/1/0"},
		{6, "k=v4@5/6/2/0"},
		{0, "k=v4@5/6/2/0"},
	}
	for _, tt := range tests {
		if got := allKVs(t, s, tt.rev); got != tt.want {
			t.Errorf("at %d: %q, want %q", tt.rev, got, tt.want)
		}
	}
}

func TestRange(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "3", 0)   // 2
	mustPut(t, s, "ab", "1", 0)  // 3
	mustPut(t, s, "abc", "2", 0) // 4
	mustPut(t, s, "b", "5", 0)   // 5
	mustPut(t, s, "c", "4", 0)   // 6
	mustPut(t, s, "a", "0", 0)   // 7: a has version 2
	mustDelete(t, s, "c", "")    // 8
	mustPut(t, s, "d", "9", 0)   // 9
	if err := s.Compact(3); err != nil {
		t.Fatal(err)
	}
	key := func(k string) []byte { return []byte(k) }
	tests := []struct {
		name   string
		r      pb.RangeRequest
		wkeys  string
		wcount int64
		wmore  bool
		werr   error
	}{
		{"single", pb.RangeRequest{Key: key("ab")}, "ab", 1, false, nil},
		{"missing", pb.RangeRequest{Key: key("zz")}, "", 0, false, nil},
		{"prefix", pb.RangeRequest{Key: key("a"), RangeEnd: key("b")}, "a,ab,abc", 3, false, nil},
		{"inverted", pb.RangeRequest{Key: key("b"), RangeEnd: key("a")}, "", 0, false, nil},
		{"from key", pb.RangeRequest{Key: key("abc"), RangeEnd: []byte{0}}, "abc,b,d", 3, false, nil},
		{"all", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}, "a,ab,abc,b,d", 5, false, nil},
		{"limit", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Limit: 2}, "a,ab", 5, true, nil},
		{"limit exact", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Limit: 5}, "a,ab,abc,b,d", 5, false, nil},
		{"count only", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true}, "", 5, false, nil},
		{"sort value desc", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_DESCEND}, "d,b,abc,ab,a", 5, false, nil},
		{"sort key desc limit", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortOrder: pb.RangeRequest_DESCEND, Limit: 2}, "d,b", 5, true, nil},
		{"sort version default asc", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: pb.RangeRequest_VERSION}, "ab,abc,b,d,a", 5, false, nil},
		{"sort create desc", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: pb.RangeRequest_CREATE, SortOrder: pb.RangeRequest_DESCEND}, "d,b,abc,ab,a", 5, false, nil},
		{"sort mod asc", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_ASCEND}, "ab,abc,b,a,d", 5, false, nil},
		{"min mod", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, MinModRevision: 5}, "a,b,d", 5, false, nil},
		{"max mod", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, MaxModRevision: 4}, "ab,abc", 5, false, nil},
		{"min create limit", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, MinCreateRevision: 3, Limit: 2}, "ab,abc", 5, true, nil},
		{"max create", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, MaxCreateRevision: 2}, "a", 5, false, nil},
		{"past", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 6}, "a,ab,abc,b,c", 5, false, nil},
		{"at compact rev", pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 3}, "a,ab", 2, false, nil},
		{"compacted", pb.RangeRequest{Key: key("a"), Revision: 2}, "", 0, false, ErrCompacted},
		{"future", pb.RangeRequest{Key: key("a"), Revision: 10}, "", 0, false, ErrFutureRev},
		{"empty key", pb.RangeRequest{}, "", 0, false, ErrEmptyKey},
		{"bad sort", pb.RangeRequest{Key: key("a"), SortOrder: 9}, "", 0, false, ErrInvalidSortOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.Range(&tt.r)
			wantErr(t, err, tt.werr)
			if err != nil {
				return
			}
			if got := keysOf(resp.Kvs); got != tt.wkeys || resp.Count != tt.wcount || resp.More != tt.wmore {
				t.Fatalf("got %q count %d more %v, want %q %d %v", got, resp.Count, resp.More, tt.wkeys, tt.wcount, tt.wmore)
			}
			if resp.Header.Revision != 9 {
				t.Fatalf("header revision %d, want 9", resp.Header.Revision)
			}
		})
	}

	resp, err := s.Range(&pb.RangeRequest{Key: key("a"), KeysOnly: true})
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Value != nil || resp.Kvs[0].Version != 2 {
		t.Fatalf("keys only: %v %v", resp, err)
	}
	if get(t, s, "a", 0).Value == nil {
		t.Fatal("keys only modified the stored value")
	}
}

func TestPutErrors(t *testing.T) {
	s := New()
	mustPut(t, s, "k", "v", 0)
	if err := s.LeaseGrant(5, 30); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		r    pb.PutRequest
		werr error
	}{
		{"empty key", pb.PutRequest{Value: []byte("v")}, ErrEmptyKey},
		{"ignore value with value", pb.PutRequest{Key: []byte("k"), Value: []byte("x"), IgnoreValue: true}, ErrValueProvided},
		{"ignore value missing key", pb.PutRequest{Key: []byte("nope"), IgnoreValue: true}, ErrKeyNotFound},
		{"ignore lease with lease", pb.PutRequest{Key: []byte("k"), Lease: 5, IgnoreLease: true}, ErrLeaseProvided},
		{"ignore lease missing key", pb.PutRequest{Key: []byte("nope"), IgnoreLease: true}, ErrKeyNotFound},
		{"unknown lease", pb.PutRequest{Key: []byte("k"), Lease: 6}, ErrLeaseNotFound},
	}
	for _, tt := range tests {
		_, err := s.Put(&tt.r)
		if err == nil {
			t.Fatalf("%s: no error", tt.name)
		}
		wantErr(t, err, tt.werr)
	}
	if s.Rev() != 2 {
		t.Fatalf("failed puts changed the revision to %d", s.Rev())
	}

	// ignore_value keeps the value, ignore_lease the lease; prev_kv returns the old kv.
	mustPut(t, s, "k", "v", 5)
	resp, err := s.Put(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true, IgnoreLease: true, PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := kvsString(kvsOne(resp.PrevKv)); got == "" {
		t.Fatal("no prev kv")
	}
	if got := kvsString(kvsOne(get(t, s, "k", 0))); got != "k=v@2/4/3/5" {
		t.Fatalf("after ignore put: %s", got)
	}
	mustPut(t, s, "k", "w", 0) // lease 0 detaches
	if _, keys, _ := s.LeaseInfo(5); len(keys) != 0 {
		t.Fatalf("lease 5 still has %q", keys)
	}
}
