package raftstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// leaseService is etcd's Lease service. Grants and revokes go through the
// log; keep-alives and TTL queries are answered by the leader, which alone
// tracks deadlines.
type leaseService struct{ s *Server }

var _ pb.LeaseServer = (*leaseService)(nil)

func (l *leaseService) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	min, max := l.s.leaseTTLBounds()
	if r.TTL > max {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	req := &pb.LeaseGrantRequest{ID: r.ID, TTL: r.TTL}
	if req.TTL < min {
		req.TTL = min
	}
	explicit := req.ID != 0
	for attempt := 0; ; attempt++ {
		if !explicit {
			// The proposer picks the ID so that every replica applies the same one.
			req.ID = randomLeaseID()
		}
		resp, err := l.s.propose(ctx, msgLeaseGrant, req)
		if errors.Is(err, rpctypes.ErrGRPCLeaseExist) && !explicit && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		out := resp.(*pb.LeaseGrantResponse)
		out.Header = l.s.header(out.Header.GetRevision())
		return out, nil
	}
}

func randomLeaseID() int64 {
	var b [8]byte
	rand.Read(b[:])
	id := int64(binary.BigEndian.Uint64(b[:]) >> 1) // positive
	if id == 0 {
		id = 1
	}
	return id
}

func (l *leaseService) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if _, _, err := l.s.fsm.kv.LeaseInfo(r.ID); err != nil && l.s.raft.State() == raft.Leader {
		return nil, toGRPCError(err)
	}
	resp, err := l.s.propose(ctx, msgLeaseRevoke, r)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseRevokeResponse)
	out.Header = l.s.header(out.Header.GetRevision())
	return out, nil
}

// renew restarts a lease's TTL on the leader, forwarding if needed.
func (s *Server) renewLease(ctx context.Context, id int64) (int64, error) {
	hold := time.Now().Add(s.holdTimeout())
	for {
		if s.raft.State() == raft.Leader {
			ttl, err := s.lessor.renew(id)
			if err == nil || !isNotLeader(err) {
				return ttl, err
			}
		}
		leader, err := s.waitLeader(ctx)
		if err != nil {
			return 0, err
		}
		if leader == s.id {
			if err := sleepCtx(ctx, s.cfg.HeartbeatTimeout/10); err != nil {
				return 0, err
			}
			continue
		}
		ttl, err := s.peers.leaseRenew(ctx, s.leaderAddr(leader), id)
		if retryable(err) && time.Now().Before(hold) {
			// Renewals are idempotent: retrying is safe.
			if err := sleepCtx(ctx, s.cfg.HeartbeatTimeout/10); err != nil {
				return 0, err
			}
			continue
		}
		return ttl, toGRPCError(err)
	}
}

func isNotLeader(err error) bool {
	return err != nil && err.Error() == notLeaderStatus().Error()
}

func (l *leaseService) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		ttl, err := l.s.renewLease(ctx, req.ID)
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID, TTL: ttl}
		if errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
			// etcd answers an unknown lease with TTL 0, not an error.
			resp.TTL = 0
		} else if err != nil {
			return err
		}
		resp.Header = l.s.header(0)
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (l *leaseService) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if l.s.raft.State() != raft.Leader {
		if isForwarded(ctx) {
			return nil, notLeaderStatus()
		}
		conn, err := l.s.leaderConn(ctx)
		if err == nil {
			resp, err := pb.NewLeaseClient(conn).LeaseTimeToLive(ctx, r)
			if err == nil {
				resp.Header = l.s.header(0)
			}
			return resp, err
		}
		if !errors.Is(err, errPeerNotLeader) {
			return nil, err
		}
	}
	granted, keys, err := l.s.fsm.kv.LeaseInfo(r.ID)
	if err != nil {
		// etcd reports an unknown lease as TTL -1.
		return &pb.LeaseTimeToLiveResponse{Header: l.s.header(0), ID: r.ID, TTL: -1}, nil
	}
	left, ok := l.s.lessor.remaining(r.ID)
	if !ok {
		left = granted
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: l.s.header(0), ID: r.ID, TTL: left, GrantedTTL: granted}
	if r.Keys {
		resp.Keys = keys
	}
	return resp, nil
}

func (l *leaseService) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	if err := l.s.linearizableBarrier(ctx); err != nil {
		return nil, err
	}
	var out []*pb.LeaseStatus
	for _, ls := range l.s.fsm.kv.Leases() {
		out = append(out, &pb.LeaseStatus{ID: ls.ID})
	}
	return &pb.LeaseLeasesResponse{Header: l.s.header(0), Leases: out}, nil
}
