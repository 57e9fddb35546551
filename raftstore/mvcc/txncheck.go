package mvcc

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// checkTxnRequest is etcd's v3rpc checkTxnRequest: the op budget is the
// largest of the compare, success and failure counts, and a nested txn gets
// what its parent left over.
func checkTxnRequest(r *pb.TxnRequest, maxTxnOps int) error {
	opc := max(len(r.Compare), len(r.Success), len(r.Failure))
	if opc > maxTxnOps {
		return ErrTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return ErrEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if err := checkRequestOp(op, maxTxnOps-opc); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRequestOp(op *pb.RequestOp, maxTxnOps int) error {
	switch tv := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		if tv.RequestRange != nil {
			return checkRangeRequest(tv.RequestRange)
		}
	case *pb.RequestOp_RequestPut:
		if tv.RequestPut != nil {
			return checkPutRequest(tv.RequestPut)
		}
	case *pb.RequestOp_RequestDeleteRange:
		if tv.RequestDeleteRange != nil {
			if len(tv.RequestDeleteRange.Key) == 0 {
				return ErrEmptyKey
			}
			return nil
		}
	case *pb.RequestOp_RequestTxn:
		if tv.RequestTxn != nil {
			return checkTxnRequest(tv.RequestTxn, maxTxnOps)
		}
	}
	// An empty op; etcd answers ErrGRPCKeyNotFound.
	return ErrKeyNotFound
}

// interval is a deleted key range as etcd's checkIntervals sees it: a single
// key when end is empty, else [begin, end) compared as plain strings. Like
// etcd, a from-key delete (end "\x00") therefore conflicts with no put.
type interval struct{ begin, end string }

func (iv interval) contains(k string) bool {
	if iv.end == "" {
		return k == iv.begin
	}
	return iv.begin <= k && k < iv.end
}

func anyContains(ivs []interval, k string) bool {
	for _, iv := range ivs {
		if iv.contains(k) {
			return true
		}
	}
	return false
}

// checkIntervals is etcd's v3rpc checkIntervals: within one branch (nested
// txns included) no key may be put twice or put and deleted, except that
// the two branches of a nested txn may put the same key. It returns the
// branch's puts and deletes for the enclosing level. Ops are bounded by
// MaxTxnOps, so linear scans are fine.
func checkIntervals(reqs []*pb.RequestOp) (map[string]struct{}, []interval, error) {
	var dels []interval
	for _, op := range reqs {
		if tv, ok := op.Request.(*pb.RequestOp_RequestDeleteRange); ok && tv.RequestDeleteRange != nil {
			d := tv.RequestDeleteRange
			dels = append(dels, interval{begin: string(d.Key), end: string(d.RangeEnd)})
		}
	}
	puts := map[string]struct{}{}
	for _, op := range reqs {
		tv, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok || tv.RequestTxn == nil {
			continue
		}
		putsThen, delsThen, err := checkIntervals(tv.RequestTxn.Success)
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkIntervals(tv.RequestTxn.Failure)
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if _, dup := puts[k]; dup || anyContains(dels, k) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, dup := puts[k]; dup {
				// then and else are exclusive: a key from putsThen is fine.
				if _, safe := putsThen[k]; !safe {
					return nil, nil, ErrDuplicateKey
				}
			}
			if anyContains(dels, k) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}
	for _, op := range reqs {
		tv, ok := op.Request.(*pb.RequestOp_RequestPut)
		if !ok || tv.RequestPut == nil {
			continue
		}
		k := string(tv.RequestPut.Key)
		if _, dup := puts[k]; dup || anyContains(dels, k) {
			return nil, nil, ErrDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
