package raftstore

import (
	"errors"

	"github.com/hashicorp/raft"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"synod/raftstore/mvcc"
)

// toGRPCError maps store and raft errors onto etcd's rpctypes errors, so that
// clients (which match on them) behave as they do against etcd. It is the one
// place where that mapping lives.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, errPeerNotLeader), errors.Is(err, errPeerUnreachable):
		return rpctypes.ErrGRPCTimeoutDueToConnectionLost
	case errors.Is(err, mvcc.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, mvcc.ErrEmptyKey):
		return rpctypes.ErrGRPCEmptyKey
	case errors.Is(err, mvcc.ErrKeyNotFound):
		return rpctypes.ErrGRPCKeyNotFound
	case errors.Is(err, mvcc.ErrValueProvided):
		return rpctypes.ErrGRPCValueProvided
	case errors.Is(err, mvcc.ErrLeaseProvided):
		return rpctypes.ErrGRPCLeaseProvided
	case errors.Is(err, mvcc.ErrDuplicateKey):
		return rpctypes.ErrGRPCDuplicateKey
	case errors.Is(err, mvcc.ErrTooManyOps):
		return rpctypes.ErrGRPCTooManyOps
	case errors.Is(err, mvcc.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, mvcc.ErrLeaseExists):
		return rpctypes.ErrGRPCLeaseExist
	case errors.Is(err, mvcc.ErrInvalidSortOption):
		return rpctypes.ErrGRPCInvalidSortOption
	case errors.Is(err, mvcc.ErrInvalidLeaseID):
		return status.Error(codes.InvalidArgument, "etcdserver: lease ID must be positive")
	case errors.Is(err, raft.ErrNotLeader):
		return rpctypes.ErrGRPCNotLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return rpctypes.ErrGRPCLeaderChanged
	case errors.Is(err, raft.ErrRaftShutdown):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return rpctypes.ErrGRPCTimeout
	}
	return status.Error(codes.Unknown, err.Error())
}
