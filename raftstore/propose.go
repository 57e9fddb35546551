package raftstore

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// applyTimeout bounds how long a proposal may wait to enter the leader's log.
const applyTimeout = 5 * time.Second

// leaderLoop reacts to leadership changes: on winning, apply a barrier so the
// FSM holds everything earlier leaders committed (reads may then be served)
// and reset lease deadlines; on losing, stop expiring leases.
func (s *Server) leaderLoop() {
	for {
		select {
		case <-s.stopCh:
			return
		case isLeader := <-s.raft.LeaderCh():
			s.metrics.leaderChanges.Inc()
			if isLeader {
				s.log.Info("became leader", "term", s.raft.CurrentTerm())
				if err := s.ensureReadReady(); err != nil {
					s.log.Warn("leader barrier failed", "err", err)
				}
				s.lessor.promote()
			} else {
				s.log.Info("lost leadership")
				s.lessor.demote()
			}
		}
	}
}

// ensureReadReady makes sure this leader has applied a barrier in its current
// term. raft's election no-op is not observable by the FSM, hence the barrier
// (as Nomad and rqlite do).
func (s *Server) ensureReadReady() error {
	term := s.raft.CurrentTerm()
	if s.readyTerm.Load() == term {
		return nil
	}
	s.barrierMu.Lock()
	defer s.barrierMu.Unlock()
	if s.readyTerm.Load() == term {
		return nil
	}
	if err := s.raft.Barrier(applyTimeout).Error(); err != nil {
		return err
	}
	if s.raft.CurrentTerm() == term && s.raft.State() == raft.Leader {
		s.readyTerm.Store(term)
	}
	return nil
}

// readIndex confirms leadership for a linearizable read and returns the FSM
// index a replica must reach to serve it (Raft thesis §6.4, read-index): the
// leader's FSM already holds every acknowledged write once it has applied its
// term's barrier, and VerifyLeader proves no newer leader exists.
func (s *Server) readIndex() (uint64, error) {
	if s.raft.State() != raft.Leader {
		return 0, raft.ErrNotLeader
	}
	if err := s.ensureReadReady(); err != nil {
		return 0, err
	}
	term := s.raft.CurrentTerm()
	commit := s.raft.CommitIndex()
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return 0, err
	}
	if s.raft.CurrentTerm() != term || s.readyTerm.Load() != term {
		return 0, raft.ErrLeadershipLost
	}
	// hashicorp/raft applies committed entries to the FSM asynchronously,
	// and a follower can apply an entry before the leader's own FSM does.
	// So the index handed out must cover every command committed so far,
	// not just what this FSM applied: otherwise a read served elsewhere
	// could see less than one that finished before it started (the chaos
	// revisions check caught exactly that).
	target := s.lastCommandAtOrBelow(commit)
	if err := s.waitAppliedFor(target, applyTimeout); err != nil {
		return 0, err
	}
	return s.fsm.applied.Load(), nil
}

// lastCommandAtOrBelow is the index of the last command entry at or below
// index (no-ops, barriers and configuration entries never reach the FSM's
// applied index), or what the FSM applied if there is none above it.
func (s *Server) lastCommandAtOrBelow(index uint64) uint64 {
	applied := s.fsm.applied.Load()
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := s.logs.GetLog(i, &l); err != nil {
			// Compacted into a snapshot, which the FSM restored: applied.
			return applied
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return applied
}

// waitAppliedFor is waitApplied bounded by d, for callers without a context.
func (s *Server) waitAppliedFor(idx uint64, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.waitApplied(ctx, idx)
}

// linearizableBarrier returns once this member's FSM is up to date enough to
// serve a linearizable read that started before the call.
func (s *Server) linearizableBarrier(ctx context.Context) error {
	if s.cfg.UnsafeChaosBug == UnsafeChaosBugStaleReads {
		return nil // test-only: proves the chaos checks can fail
	}
	hold := time.Now().Add(s.holdTimeout())
	for {
		if s.raft.State() == raft.Leader {
			_, err := s.readIndex()
			if err == nil {
				return nil
			}
			if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
				return toGRPCError(err)
			}
		}
		leader, err := s.waitLeader(ctx)
		if err != nil {
			return err
		}
		if leader == s.id {
			continue
		}
		// A leader that froze (SIGSTOP, a VM pause) still accepts the call
		// and never answers; a new leader is elected meanwhile. Reads are
		// safe to repeat, so each attempt is bounded and then retried
		// against whoever leads by then.
		actx, cancel := context.WithTimeout(ctx, s.forwardReadTimeout())
		idx, err := s.peers.readIndex(actx, s.leaderAddr(leader))
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
			err = errPeerUnreachable
		}
		if retryable(err) && time.Now().Before(hold) {
			if err := sleepCtx(ctx, s.cfg.HeartbeatTimeout/10); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return toGRPCError(err)
		}
		return s.waitApplied(ctx, idx)
	}
}

// waitApplied blocks until the FSM has applied index idx.
func (s *Server) waitApplied(ctx context.Context, idx uint64) error {
	for {
		ch := s.fsm.appliedChanged()
		if s.fsm.applied.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return rpctypes.ErrGRPCTimeoutWaitAppliedIndex
		case <-s.stopCh:
			return rpctypes.ErrGRPCStopped
		}
	}
}

// propose commits a command and returns its result. On the leader it goes
// straight into the log; on a follower it is forwarded to the leader. A
// command is re-sent only when it certainly did not enter a log (the target
// said it was not the leader), so no write is ever applied twice.
func (s *Server) propose(ctx context.Context, t msgType, req marshaler) (resp marshaler, err error) {
	defer func() { s.metrics.observeProposal(t, err, isRejection(err)) }()
	cmd, err := encodeCommand(t, req)
	if err != nil {
		return nil, err
	}
	if len(cmd) > s.cfg.MaxRequestBytes+1 {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	hold := time.Now().Add(s.holdTimeout())
	for {
		if s.raft.State() == raft.Leader {
			resp, err := s.applyLocal(cmd)
			if !errors.Is(err, raft.ErrNotLeader) {
				return resp, err
			}
		}
		leader, err := s.waitLeader(ctx)
		if err != nil {
			return nil, err
		}
		if leader == s.id {
			continue
		}
		s.metrics.forwarded.Inc()
		// Bounded like a local apply: a frozen leader must not hold the
		// caller forever. Its outcome is then unknown, which etcd reports
		// as "request timed out" (never retried here).
		pctx, cancel := context.WithTimeout(ctx, applyTimeout+s.cfg.ElectionTimeout)
		raw, err := s.peers.propose(pctx, s.leaderAddr(leader), cmd)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
			return nil, rpctypes.ErrGRPCTimeout
		}
		if retryable(err) && time.Now().Before(hold) {
			// Nothing was appended anywhere: safe to retry with the new leader.
			if err := sleepCtx(ctx, s.cfg.HeartbeatTimeout/10); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, toGRPCError(err)
		}
		resp, err := newResponse(t)
		if err != nil {
			return nil, err
		}
		if err := resp.Unmarshal(raw); err != nil {
			return nil, err
		}
		return resp, nil
	}
}

// isRejection tells a request the store applied and refused (a deterministic
// error such as a missing lease) from one whose outcome is unknown.
func isRejection(err error) bool {
	st, ok := status.FromError(err)
	return ok && err != nil && (st.Code() == codes.InvalidArgument || st.Code() == codes.NotFound ||
		st.Code() == codes.OutOfRange || st.Code() == codes.FailedPrecondition)
}

// holdTimeout bounds how long a request waits for a usable leader across
// retries (Consul's RPCHoldTimeout plays the same part): long enough to ride
// out an election, short enough to fail while the client still waits.
func (s *Server) holdTimeout() time.Duration { return 2*s.cfg.ElectionTimeout + 3*time.Second }

// retryable reports whether a forwarded request certainly did not reach a
// leader's log, so that sending it again cannot apply it twice.
// forwardReadTimeout bounds one forwarded read-index attempt: a live leader
// answers within a heartbeat round; two election timeouts is generous.
func (s *Server) forwardReadTimeout() time.Duration {
	return max(2*s.cfg.ElectionTimeout, 500*time.Millisecond)
}

func retryable(err error) bool {
	return errors.Is(err, errPeerNotLeader) || errors.Is(err, errPeerUnreachable)
}

// applyLocal appends cmd on this member, which must lead. raft.ErrNotLeader is
// returned untouched (the entry was not appended: the caller may forward it);
// every other failure means the outcome is unknown.
func (s *Server) applyLocal(cmd []byte) (marshaler, error) {
	if s.cfg.UnsafeChaosBug == UnsafeChaosBugAckBeforeCommit && len(cmd) > 0 && msgType(cmd[0]) == msgPut {
		// test-only: proves the chaos checks can fail. Acknowledge with a
		// guessed revision; the entry enters the log a second later, or
		// never if this process dies first.
		go func() {
			time.Sleep(time.Second)
			s.raft.Apply(cmd, applyTimeout)
		}()
		return &pb.PutResponse{Header: &pb.ResponseHeader{Revision: s.fsm.kv.Rev() + 1}}, nil
	}
	f := s.raft.Apply(cmd, applyTimeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, err
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, rpctypes.ErrGRPCLeaderChanged
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, rpctypes.ErrGRPCTimeout
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, rpctypes.ErrGRPCStopped
		}
		return nil, toGRPCError(err)
	}
	res := f.Response().(applyResult)
	if res.err != nil {
		return nil, toGRPCError(res.err)
	}
	return res.resp, nil
}

// waitLeader returns the current leader's member ID, waiting (bounded by ctx
// and an election's worth of time) while there is none.
func (s *Server) waitLeader(ctx context.Context) (uint64, error) {
	deadline := time.Now().Add(s.holdTimeout())
	for {
		if _, id := s.raft.LeaderWithID(); id != "" {
			return parseServerID(id), nil
		}
		if time.Now().After(deadline) {
			return 0, rpctypes.ErrGRPCNoLeader
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return 0, err
		}
		select {
		case <-s.stopCh:
			return 0, rpctypes.ErrGRPCStopped
		default:
		}
	}
}

// leaderAddr is the peer address of member id as raft knows it.
func (s *Server) leaderAddr(id uint64) string {
	addr, lid := s.raft.LeaderWithID()
	if parseServerID(lid) == id {
		return string(addr)
	}
	return ""
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

// ctxErr maps a finished context onto etcd's errors.
func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return rpctypes.ErrGRPCDeadlineExceeded
	}
	return rpctypes.ErrGRPCCanceled
}

// header builds a response header for this member.
func (s *Server) header(rev int64) *pb.ResponseHeader {
	if rev == 0 {
		rev = s.fsm.kv.Rev()
	}
	return &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.id, Revision: rev, RaftTerm: s.raft.CurrentTerm()}
}

// publishLoop publishes this member's name and client URLs through the log
// (as etcd members do at start), so every member can answer MemberList.
func (s *Server) publishLoop() {
	want := &pb.Member{ID: s.id, Name: s.cfg.Name, PeerURLs: []string{s.cfg.AdvertisePeerURL}, ClientURLs: s.cfg.AdvertiseClientURLs}
	if len(want.ClientURLs) == 0 {
		want.ClientURLs = s.cfg.ListenClientURLs
	}
	backoff := 100 * time.Millisecond
	for {
		if have, ok := s.fsm.memberAttr(s.id); ok && sameMember(have, want) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.propose(ctx, msgMemberAttr, want)
		cancel()
		if err == nil {
			s.log.Info("published member attributes", "name", want.Name, "client_urls", want.ClientURLs)
			continue
		}
		select {
		case <-s.stopCh:
			return
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

func sameMember(a, b *pb.Member) bool {
	return a.ID == b.ID && a.Name == b.Name && slices.Equal(a.PeerURLs, b.PeerURLs) && slices.Equal(a.ClientURLs, b.ClientURLs)
}
