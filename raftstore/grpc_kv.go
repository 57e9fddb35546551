package raftstore

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"synod/raftstore/mvcc"
)

// kvService is etcd's KV service.
type kvService struct{ s *Server }

var _ pb.KVServer = (*kvService)(nil)

func (k *kvService) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	if r.SortOrder < pb.RangeRequest_NONE || r.SortOrder > pb.RangeRequest_DESCEND ||
		r.SortTarget < pb.RangeRequest_KEY || r.SortTarget > pb.RangeRequest_VALUE {
		return nil, rpctypes.ErrGRPCInvalidSortOption
	}
	if !r.Serializable {
		if err := k.s.linearizableBarrier(ctx); err != nil {
			return nil, err
		}
	}
	resp, err := k.s.fsm.kv.Range(r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = k.s.header(resp.Header.GetRevision())
	return resp, nil
}

func (k *kvService) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	if r.IgnoreValue && len(r.Value) != 0 {
		return nil, rpctypes.ErrGRPCValueProvided
	}
	if r.IgnoreLease && r.Lease != 0 {
		return nil, rpctypes.ErrGRPCLeaseProvided
	}
	resp, err := k.s.propose(ctx, msgPut, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.PutResponse)
	out.Header = k.s.header(out.Header.GetRevision())
	return out, nil
}

func (k *kvService) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	resp, err := k.s.propose(ctx, msgDeleteRange, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.DeleteRangeResponse)
	out.Header = k.s.header(out.Header.GetRevision())
	return out, nil
}

func (k *kvService) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(r, 0); err != nil {
		return nil, err
	}
	if txnReadOnly(r) {
		// etcd serves read-only transactions without a log entry.
		if !txnSerializable(r) {
			if err := k.s.linearizableBarrier(ctx); err != nil {
				return nil, err
			}
		}
		resp, err := k.s.fsm.kv.Txn(r)
		if err != nil {
			return nil, toGRPCError(err)
		}
		resp.Header = k.s.header(resp.Header.GetRevision())
		return resp, nil
	}
	resp, err := k.s.propose(ctx, msgTxn, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.TxnResponse)
	out.Header = k.s.header(out.Header.GetRevision())
	return out, nil
}

func (k *kvService) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := k.s.propose(ctx, msgCompact, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.CompactionResponse)
	out.Header = k.s.header(out.Header.GetRevision())
	return out, nil
}

// checkTxn rejects malformed transactions before they reach the log: too many
// operations, empty keys, ops with no request in them.
func checkTxn(r *pb.TxnRequest, depth int) error {
	if depth > 16 {
		return rpctypes.ErrGRPCTooManyOps
	}
	if len(r.Success) > mvcc.MaxTxnOps || len(r.Failure) > mvcc.MaxTxnOps || len(r.Compare) > mvcc.MaxTxnOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch o := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if o.RequestRange == nil || len(o.RequestRange.Key) == 0 {
					return rpctypes.ErrGRPCEmptyKey
				}
			case *pb.RequestOp_RequestPut:
				if o.RequestPut == nil || len(o.RequestPut.Key) == 0 {
					return rpctypes.ErrGRPCEmptyKey
				}
			case *pb.RequestOp_RequestDeleteRange:
				if o.RequestDeleteRange == nil || len(o.RequestDeleteRange.Key) == 0 {
					return rpctypes.ErrGRPCEmptyKey
				}
			case *pb.RequestOp_RequestTxn:
				if o.RequestTxn == nil {
					return rpctypes.ErrGRPCEmptyKey
				}
				if err := checkTxn(o.RequestTxn, depth+1); err != nil {
					return err
				}
			default:
				return rpctypes.ErrGRPCEmptyKey
			}
		}
	}
	return nil
}

func txnReadOnly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch o := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
			case *pb.RequestOp_RequestTxn:
				if !txnReadOnly(o.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// txnSerializable: a read-only txn is served locally only if every range in
// it asks for serializable reads.
func txnSerializable(r *pb.TxnRequest) bool {
	n := 0
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch o := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if !o.RequestRange.Serializable {
					return false
				}
				n++
			case *pb.RequestOp_RequestTxn:
				if !txnSerializable(o.RequestTxn) {
					return false
				}
				n++
			}
		}
	}
	return n > 0
}
