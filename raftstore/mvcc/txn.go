package mvcc

import (
	"bytes"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Txn runs a transaction the way etcd v3.5 does (v3rpc checkTxnRequest and
// checkIntervals, then applierV3backend.Txn): all compares, including those
// of nested txns on the executed path, are evaluated against the state
// before the txn; every write of the executed branch shares one new
// revision; reads see the txn's earlier writes. Validation errors, and
// ErrLeaseNotFound/ErrKeyNotFound/ErrFutureRev/ErrCompacted found in the
// executed branch, are returned before anything changes.
func (s *Store) Txn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxnRequest(r, MaxTxnOps); err != nil {
		return nil, err
	}
	if _, _, err := checkIntervals(r.Success); err != nil {
		return nil, err
	}
	if _, _, err := checkIntervals(r.Failure); err != nil {
		return nil, err
	}
	readOnly := isTxnReadOnly(r)
	if readOnly {
		s.mu.RLock()
		defer s.mu.RUnlock()
	} else {
		s.mu.Lock()
		defer s.mu.Unlock()
	}

	path := &txnPath{p: s.compareToPath(r)}
	if err := s.checkRequests(r, path, !readOnly); err != nil {
		return nil, err
	}
	path.i = 0
	w := s.newWriter()
	resp := w.applyTxn(r, path)
	if !readOnly {
		s.commit(w)
	}
	resp.Header = header(s.rev)
	return resp, nil
}

// txnPath is the flattened, pre-order list of compare outcomes of a txn and
// of the nested txns on its executed path (etcd's txnPath), with a cursor.
type txnPath struct {
	p []bool
	i int
}

func (tp *txnPath) next() bool {
	v := tp.p[tp.i]
	tp.i++
	return v
}

func branch(r *pb.TxnRequest, succeeded bool) []*pb.RequestOp {
	if succeeded {
		return r.Success
	}
	return r.Failure
}

func (st *state) compareToPath(r *pb.TxnRequest) []bool {
	ok := true
	for _, c := range r.Compare {
		if !st.applyCompare(c) {
			ok = false
			break
		}
	}
	path := []bool{ok}
	for _, op := range branch(r, ok) {
		if tv, isTxn := op.Request.(*pb.RequestOp_RequestTxn); isTxn && tv.RequestTxn != nil {
			path = append(path, st.compareToPath(tv.RequestTxn)...)
		}
	}
	return path
}

// applyCompare follows etcd's applyCompare: every key in the compare's range
// must satisfy it; with no key, a value compare fails and any other compares
// against zero values.
func (st *state) applyCompare(c *pb.Compare) bool {
	found, ok := false, true
	st.visit(c.Key, c.RangeEnd, st.rev, func(kv *mvccpb.KeyValue) bool {
		found = true
		ok = compareKV(c, kv)
		return ok
	})
	if !found {
		if c.Target == pb.Compare_VALUE {
			return false
		}
		return compareKV(c, &mvccpb.KeyValue{})
	}
	return ok
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var result int
	switch c.Target {
	case pb.Compare_VALUE:
		v := []byte{}
		if tv, _ := c.TargetUnion.(*pb.Compare_Value); tv != nil {
			v = tv.Value
		}
		result = bytes.Compare(kv.Value, v)
	case pb.Compare_CREATE:
		result = cmpInt64(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		result = cmpInt64(kv.ModRevision, c.GetModRevision())
	case pb.Compare_VERSION:
		result = cmpInt64(kv.Version, c.GetVersion())
	case pb.Compare_LEASE:
		result = cmpInt64(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return result == 0
	case pb.Compare_NOT_EQUAL:
		return result != 0
	case pb.Compare_GREATER:
		return result > 0
	case pb.Compare_LESS:
		return result < 0
	}
	return true
}

// checkRequests validates the ops on the executed path against the state
// before the txn (etcd's checkRequests with checkPut and checkRange).
func (st *state) checkRequests(r *pb.TxnRequest, path *txnPath, writes bool) error {
	for _, op := range branch(r, path.next()) {
		switch tv := op.Request.(type) {
		case *pb.RequestOp_RequestTxn:
			if err := st.checkRequests(tv.RequestTxn, path, writes); err != nil {
				return err
			}
		case *pb.RequestOp_RequestPut:
			if writes {
				if err := st.checkPut(tv.RequestPut); err != nil {
					return err
				}
			}
		case *pb.RequestOp_RequestRange:
			if _, err := st.checkRev(tv.RequestRange.Revision, st.rev); err != nil {
				return fmt.Errorf("txn range at %d: %w", tv.RequestRange.Revision, err)
			}
		}
	}
	return nil
}

// applyTxn executes the branch chosen by path. Every failure was ruled out
// by the checks, so an error here is a bug; like etcd, panic rather than
// leave a half-applied txn behind silently.
func (w *writer) applyTxn(r *pb.TxnRequest, path *txnPath) *pb.TxnResponse {
	ok := path.next()
	ops := branch(r, ok)
	resp := &pb.TxnResponse{Succeeded: ok, Responses: make([]*pb.ResponseOp, len(ops))}
	for i, op := range ops {
		var ro pb.ResponseOp
		switch tv := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := w.st.unsafeRange(tv.RequestRange, w.curRev())
			if err != nil {
				panic(fmt.Sprintf("mvcc: unexpected range error in txn after checks: %v", err))
			}
			ro.Response = &pb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *pb.RequestOp_RequestPut:
			pr, err := w.put(tv.RequestPut)
			if err != nil {
				panic(fmt.Sprintf("mvcc: unexpected put error in txn after checks: %v", err))
			}
			ro.Response = &pb.ResponseOp_ResponsePut{ResponsePut: pr}
		case *pb.RequestOp_RequestDeleteRange:
			ro.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: w.deleteRange(tv.RequestDeleteRange)}
		case *pb.RequestOp_RequestTxn:
			tr := w.applyTxn(tv.RequestTxn, path)
			tr.Header = header(w.curRev())
			ro.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: tr}
		}
		resp.Responses[i] = &ro
	}
	return resp
}

func isTxnReadOnly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch tv := op.Request.(type) {
			case *pb.RequestOp_RequestPut, *pb.RequestOp_RequestDeleteRange:
				return false
			case *pb.RequestOp_RequestTxn:
				if !isTxnReadOnly(tv.RequestTxn) {
					return false
				}
			}
		}
	}
	return true
}
