package mvcc

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Put sets a key (see etcd's PutRequest for the flags). The store keeps the
// request's Key and Value slices without copying: callers must not modify
// them afterwards. Errors leave the state unchanged.
func (s *Store) Put(r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPutRequest(r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPut(r); err != nil {
		return nil, err
	}
	w := s.newWriter()
	resp, err := w.put(r)
	if err != nil {
		// checkPut ruled this out under the same lock.
		panic(fmt.Sprintf("mvcc: unexpected put error after checks: %v", err))
	}
	s.commit(w)
	resp.Header = header(s.rev)
	return resp, nil
}

// DeleteRange deletes the keys in the request's range. Deleting nothing does
// not change the revision.
func (s *Store) DeleteRange(r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, ErrEmptyKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.newWriter()
	resp := w.deleteRange(r)
	s.commit(w)
	resp.Header = header(s.rev)
	return resp, nil
}

// checkPutRequest is the state-independent validation (etcd's v3rpc
// checkPutRequest).
func checkPutRequest(r *pb.PutRequest) error {
	switch {
	case len(r.Key) == 0:
		return ErrEmptyKey
	case r.IgnoreValue && len(r.Value) != 0:
		return ErrValueProvided
	case r.IgnoreLease && r.Lease != 0:
		return ErrLeaseProvided
	}
	return nil
}

// checkPut is the validation against the current state (etcd's
// applierV3backend.checkPut), run before any change is made.
func (st *state) checkPut(r *pb.PutRequest) error {
	if r.Lease != 0 {
		if _, ok := st.leases[r.Lease]; !ok {
			return fmt.Errorf("%w: %x", ErrLeaseNotFound, r.Lease)
		}
	}
	if r.IgnoreValue || r.IgnoreLease {
		if st.get(r.Key).live() == nil {
			return fmt.Errorf("%w: %q", ErrKeyNotFound, r.Key)
		}
	}
	return nil
}

// get returns the history of key, nil if there is none.
func (st *state) get(key []byte) *keyHistory {
	h, _ := st.tree.Get(&keyHistory{key: key})
	return h
}

// writer applies the changes of one request, all at main revision main with
// sub-revisions 0, 1, ... It writes straight into the state; commit
// publishes the new revision and events.
type writer struct {
	st   *state
	main int64
	evs  []event // this revision's changes, in sub order
}

func (st *state) newWriter() *writer { return &writer{st: st, main: st.rev + 1} }

// curRev is the revision reads inside the request see as current: the new
// revision once something was written (etcd's storeTxnWrite.Range).
func (w *writer) curRev() int64 {
	if len(w.evs) > 0 {
		return w.main
	}
	return w.main - 1
}

// commit makes w's revision current, if it changed anything.
func (s *Store) commit(w *writer) {
	if len(w.evs) == 0 {
		return
	}
	s.rev = w.main
	s.events = append(s.events, w.evs...)
	s.unsafeNotify()
}

func (w *writer) put(r *pb.PutRequest) (*pb.PutResponse, error) {
	h := w.st.get(r.Key)
	prev := h.live()
	val, lease := r.Value, r.Lease
	if r.IgnoreValue || r.IgnoreLease {
		if prev == nil {
			return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, r.Key)
		}
		if r.IgnoreValue {
			val = prev.Value
		}
		if r.IgnoreLease {
			lease = prev.Lease
		}
	}
	resp := &pb.PutResponse{}
	if r.PrevKv {
		resp.PrevKv = prev
	}
	kv := &mvccpb.KeyValue{Key: r.Key, Value: val, Lease: lease,
		CreateRevision: w.main, ModRevision: w.main, Version: 1}
	if h == nil {
		h = &keyHistory{key: r.Key}
	}
	kv.Key = h.key // share one copy of the key bytes per key
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		w.st.detach(prev.Lease, h.key)
	}
	w.st.attach(lease, h.key)
	w.add(h, entry{kv: kv, sub: int64(len(w.evs))}, prev)
	resp.Header = header(w.main)
	return resp, nil
}

func (w *writer) deleteRange(r *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	deleted := w.deleteKeys(r.Key, r.RangeEnd)
	resp := &pb.DeleteRangeResponse{Header: header(w.curRev()), Deleted: int64(len(deleted))}
	if r.PrevKv {
		resp.PrevKvs = deleted
	}
	return resp
}

// deleteKeys writes a tombstone for every live key in the range, in key
// order, and returns the deleted values.
func (w *writer) deleteKeys(key, end []byte) []*mvccpb.KeyValue {
	var hs []*keyHistory
	pivot := &keyHistory{key: key}
	collect := func(h *keyHistory) bool {
		if h.live() != nil {
			hs = append(hs, h)
		}
		return true
	}
	switch {
	case len(end) == 0:
		if h := w.st.get(key); h != nil {
			collect(h)
		}
	case isFromKey(end):
		w.st.tree.AscendGreaterOrEqual(pivot, collect)
	case string(key) < string(end):
		w.st.tree.AscendRange(pivot, &keyHistory{key: end}, collect)
	}
	deleted := make([]*mvccpb.KeyValue, 0, len(hs))
	for _, h := range hs {
		prev := h.live()
		w.st.detach(prev.Lease, h.key)
		tomb := &mvccpb.KeyValue{Key: h.key, ModRevision: w.main}
		w.add(h, entry{kv: tomb, sub: int64(len(w.evs)), tomb: true}, prev)
		deleted = append(deleted, prev)
	}
	return deleted
}

// add records e as the newest revision of h's key, replacing the history.
func (w *writer) add(h *keyHistory, e entry, prev *mvccpb.KeyValue) {
	w.st.tree.ReplaceOrInsert(h.with(e))
	w.evs = append(w.evs, event{entry: e, prev: prev})
}
