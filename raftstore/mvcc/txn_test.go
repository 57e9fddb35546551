package mvcc

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestTxnCompare(t *testing.T) {
	s := New()
	if err := s.LeaseGrant(7, 10); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "m", 7) // 2
	mustPut(t, s, "k", "n", 7) // 3: create 2, mod 3, version 2, lease 7, value "n"
	mustPut(t, s, "k2", "z", 0)

	cmp := func(key string, target pb.Compare_CompareTarget, res pb.Compare_CompareResult, v int64, val string) *pb.Compare {
		c := &pb.Compare{Key: []byte(key), Target: target, Result: res}
		switch target {
		case pb.Compare_VERSION:
			c.TargetUnion = &pb.Compare_Version{Version: v}
		case pb.Compare_CREATE:
			c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: v}
		case pb.Compare_MOD:
			c.TargetUnion = &pb.Compare_ModRevision{ModRevision: v}
		case pb.Compare_LEASE:
			c.TargetUnion = &pb.Compare_Lease{Lease: v}
		case pb.Compare_VALUE:
			c.TargetUnion = &pb.Compare_Value{Value: []byte(val)}
		}
		return c
	}
	const (
		eq, ne, gt, lt = pb.Compare_EQUAL, pb.Compare_NOT_EQUAL, pb.Compare_GREATER, pb.Compare_LESS
		ver, cre, mod  = pb.Compare_VERSION, pb.Compare_CREATE, pb.Compare_MOD
		val, lea       = pb.Compare_VALUE, pb.Compare_LEASE
	)
	tests := []struct {
		c    *pb.Compare
		want bool
	}{
		{cmp("k", ver, eq, 2, ""), true},
		{cmp("k", ver, gt, 1, ""), true},
		{cmp("k", ver, lt, 2, ""), false},
		{cmp("k", ver, ne, 2, ""), false},
		{cmp("k", cre, eq, 2, ""), true},
		{cmp("k", cre, gt, 2, ""), false},
		{cmp("k", mod, eq, 3, ""), true},
		{cmp("k", mod, lt, 4, ""), true},
		{cmp("k", lea, eq, 7, ""), true},
		{cmp("k", lea, ne, 0, ""), true},
		{cmp("k", val, eq, 0, "n"), true},
		{cmp("k", val, gt, 0, "m"), true},
		{cmp("k", val, lt, 0, "m"), false},
		{cmp("k", val, ne, 0, "n"), false},
		// A missing key compares as zero values, except that a value compare fails.
		{cmp("missing", ver, eq, 0, ""), true},
		{cmp("missing", cre, eq, 0, ""), true},
		{cmp("missing", mod, lt, 1, ""), true},
		{cmp("missing", lea, eq, 0, ""), true},
		{cmp("missing", val, eq, 0, ""), false},
		{cmp("missing", val, ne, 0, "x"), false},
		// Ranges: every key must satisfy the compare.
		{&pb.Compare{Key: []byte("k"), RangeEnd: []byte("l"), Target: ver, Result: gt, TargetUnion: &pb.Compare_Version{Version: 0}}, true},
		{&pb.Compare{Key: []byte("k"), RangeEnd: []byte("l"), Target: ver, Result: eq, TargetUnion: &pb.Compare_Version{Version: 2}}, false},
		{&pb.Compare{Key: []byte("k"), RangeEnd: []byte{0}, Target: lea, Result: eq, TargetUnion: &pb.Compare_Lease{Lease: 7}}, false},
		{&pb.Compare{Key: []byte("x"), RangeEnd: []byte("y"), Target: ver, Result: eq, TargetUnion: &pb.Compare_Version{Version: 0}}, true},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			resp, err := s.Txn(&pb.TxnRequest{Compare: []*pb.Compare{tt.c}, Success: []*pb.RequestOp{rangeOp("k", "")}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Succeeded != tt.want {
				t.Fatalf("compare %v: succeeded %v, want %v", tt.c, resp.Succeeded, tt.want)
			}
			if n := len(resp.Responses); tt.want && n != 1 || !tt.want && n != 0 {
				t.Fatalf("%d responses", n)
			}
		})
	}
}

func TestTxnNestedAndReadYourWrites(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "1", 0) // 2
	resp, err := s.Txn(&pb.TxnRequest{
		Compare: []*pb.Compare{cmpVersion("a", pb.Compare_EQUAL, 1)},
		Success: []*pb.RequestOp{
			putOp("b", "2"),
			rangeOp("a", "c"),
			txnOp(&pb.TxnRequest{
				// Nested compares see the state before the txn: b does not exist yet.
				Compare: []*pb.Compare{cmpVersion("b", pb.Compare_EQUAL, 0)},
				Success: []*pb.RequestOp{putOp("c", "3"), rangeOp("c", "")},
				Failure: []*pb.RequestOp{putOp("d", "4")},
			}),
			delOp("a", ""),
		},
		Failure: []*pb.RequestOp{putOp("z", "z")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || resp.Header.Revision != 3 || len(resp.Responses) != 4 {
		t.Fatalf("resp %v", resp)
	}
	if got := kvsString(resp.Responses[1].GetResponseRange().Kvs); got != "a=1@2/2/1/0 b=2@3/3/1/0" {
		t.Fatalf("range inside txn: %s", got)
	}
	nested := resp.Responses[2].GetResponseTxn()
	if !nested.Succeeded || keysOf(nested.Responses[1].GetResponseRange().Kvs) != "c" {
		t.Fatalf("nested: %v", nested)
	}
	if d := resp.Responses[3].GetResponseDeleteRange(); d.Deleted != 1 || kvsString(d.PrevKvs) != "a=1@2/2/1/0" {
		t.Fatalf("delete in txn: %v", d)
	}
	if got := allKVs(t, s, 0); got != "b=2@3/3/1/0 c=3@3/3/1/0" {
		t.Fatalf("after txn: %s", got)
	}
	evs, _, _ := s.Events(3, nil, []byte{0}, 0)
	if got := eventsString(evs); got != "PUT b=2@3 prev=-; PUT c=3@3 prev=-; DELETE a=@3 prev=1" {
		t.Fatalf("events: %s", got)
	}
}

func TestTxnValidation(t *testing.T) {
	s := New()
	mustPut(t, s, "a", "1", 0)
	many := make([]*pb.RequestOp, MaxTxnOps+1)
	for i := range many {
		many[i] = putOp(fmt.Sprint("k", i), "v")
	}
	tests := []struct {
		name string
		r    *pb.TxnRequest
		werr error
	}{
		{"too many ops", &pb.TxnRequest{Success: many}, ErrTooManyOps},
		{"max ops ok", &pb.TxnRequest{Success: many[:MaxTxnOps], Failure: many[:MaxTxnOps]}, nil},
		{"nested budget", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: many[:MaxTxnOps]})}}, ErrTooManyOps},
		{"duplicate put", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("x", "1"), putOp("x", "2")}}, ErrDuplicateKey},
		{"put in deleted range", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "1"), delOp("a", "c")}}, ErrDuplicateKey},
		{"nested put vs delete", &pb.TxnRequest{Success: []*pb.RequestOp{delOp("x", ""), txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("x", "1")}})}}, ErrDuplicateKey},
		{"nested then/else same key", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("x", "1")}, Failure: []*pb.RequestOp{putOp("x", "2")}})}}, nil},
		{"dup across branches ok", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("x", "1")}, Failure: []*pb.RequestOp{putOp("x", "1")}}, nil},
		{"empty compare key", &pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VERSION}}}, ErrEmptyKey},
		{"empty op", &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, ErrKeyNotFound},
		{"unknown lease", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("n", "1"), {Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("m"), Lease: 99}}}}}, ErrLeaseNotFound},
		{"future range", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("n", "1"), {Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 1000}}}}}, ErrFutureRev},
		{"unknown lease in branch not taken", &pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("a", pb.Compare_EQUAL, 9)}, Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("m"), Lease: 99}}}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := allKVs(t, s, 0)
			rev := s.Rev()
			_, err := s.Txn(tt.r)
			wantErr(t, err, tt.werr)
			if err != nil && (s.Rev() != rev || allKVs(t, s, 0) != before) {
				t.Fatal("failed txn changed the state")
			}
		})
	}
}
