package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// ErrInvalidSortOption is returned for a RangeRequest with an unknown sort
// order or target (etcd's ErrGRPCInvalidSortOption).
var ErrInvalidSortOption = errors.New("mvcc: invalid sort option")

// Range returns the keys in the request's range as of r.Revision (0 or less:
// the current revision). It fails with ErrFutureRev past the current
// revision and ErrCompacted before the compaction revision. The returned
// KeyValues are shared and must not be modified.
func (s *Store) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRangeRequest(r); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.unsafeRange(r, s.rev)
}

func checkRangeRequest(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return fmt.Errorf("%w: order %d", ErrInvalidSortOption, r.SortOrder)
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return fmt.Errorf("%w: target %d", ErrInvalidSortOption, r.SortTarget)
	}
	return nil
}

// checkRev resolves a requested read revision against curRev, the revision
// the reader considers current.
func (st *state) checkRev(rev, curRev int64) (int64, error) {
	if rev > curRev {
		return 0, ErrFutureRev
	}
	if rev <= 0 {
		rev = curRev
	}
	if rev < st.compactRev {
		return 0, ErrCompacted
	}
	return rev, nil
}

// unsafeRange serves a validated RangeRequest; curRev is the revision a read
// sees as current (inside a writing txn, the txn's own revision once it has
// written). It follows etcd's applierV3backend.Range step by step, including
// its quirk that a non-key sort target without a sort order only sorts the
// first Limit+1 keys.
func (st *state) unsafeRange(r *pb.RangeRequest, curRev int64) (*pb.RangeResponse, error) {
	rev, err := st.checkRev(r.Revision, curRev)
	if err != nil {
		return nil, err
	}
	filtered := r.MinModRevision != 0 || r.MaxModRevision != 0 ||
		r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
	fetch := 0 // 0: all
	if r.Limit > 0 && r.SortOrder == pb.RangeRequest_NONE && !filtered {
		fetch = int(r.Limit) + 1 // one extra to know whether there is more
	}

	var kvs []*mvccpb.KeyValue
	count := 0
	st.visit(r.Key, r.RangeEnd, rev, func(kv *mvccpb.KeyValue) bool {
		count++
		if !r.CountOnly && (fetch == 0 || len(kvs) < fetch) {
			kvs = append(kvs, kv)
		}
		return true
	})

	if filtered {
		kvs = filterKVs(kvs, r)
	}
	sortKVs(kvs, r.SortOrder, r.SortTarget)

	resp := &pb.RangeResponse{Header: header(curRev), Count: int64(count)}
	if r.Limit > 0 && len(kvs) > int(r.Limit) {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for i, kv := range kvs {
			c := *kv
			c.Value = nil
			kvs[i] = &c
		}
	}
	resp.Kvs = kvs
	return resp, nil
}

// visit calls fn, in key order, with the value at rev of each key in the
// range (etcd conventions, see inRange) that existed at rev, until fn
// returns false.
func (st *state) visit(key, end []byte, rev int64, fn func(*mvccpb.KeyValue) bool) {
	pivot := &keyHistory{key: key}
	iter := func(h *keyHistory) bool {
		if kv := h.at(rev); kv != nil {
			return fn(kv)
		}
		return true
	}
	switch {
	case len(end) == 0:
		if h, ok := st.tree.Get(pivot); ok {
			iter(h)
		}
	case isFromKey(end):
		st.tree.AscendGreaterOrEqual(pivot, iter)
	case bytes.Compare(key, end) < 0:
		st.tree.AscendRange(pivot, &keyHistory{key: end}, iter)
	}
}

// filterKVs drops kvs outside the request's mod/create revision bounds,
// in place.
func filterKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) []*mvccpb.KeyValue {
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision:
		case r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision:
		case r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision:
		case r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision:
		default:
			out = append(out, kv)
		}
	}
	return out
}

// sortKVs sorts kvs (which are in key order) as etcd does: a non-key target
// defaults to ascending, key ascending is already the order. The sort is
// stable, so ties stay in key order and the result is deterministic.
func sortKVs(kvs []*mvccpb.KeyValue, order pb.RangeRequest_SortOrder, target pb.RangeRequest_SortTarget) {
	if target != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if order == pb.RangeRequest_NONE || (target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND) {
		return
	}
	var cmp func(a, b *mvccpb.KeyValue) int
	switch target {
	case pb.RangeRequest_KEY:
		cmp = func(a, b *mvccpb.KeyValue) int { return bytes.Compare(a.Key, b.Key) }
	case pb.RangeRequest_VERSION:
		cmp = func(a, b *mvccpb.KeyValue) int { return cmpInt64(a.Version, b.Version) }
	case pb.RangeRequest_CREATE:
		cmp = func(a, b *mvccpb.KeyValue) int { return cmpInt64(a.CreateRevision, b.CreateRevision) }
	case pb.RangeRequest_MOD:
		cmp = func(a, b *mvccpb.KeyValue) int { return cmpInt64(a.ModRevision, b.ModRevision) }
	case pb.RangeRequest_VALUE:
		cmp = func(a, b *mvccpb.KeyValue) int { return bytes.Compare(a.Value, b.Value) }
	default:
		return
	}
	if order == pb.RangeRequest_DESCEND {
		sort.SliceStable(kvs, func(i, j int) bool { return cmp(kvs[i], kvs[j]) > 0 })
		return
	}
	sort.SliceStable(kvs, func(i, j int) bool { return cmp(kvs[i], kvs[j]) < 0 })
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
