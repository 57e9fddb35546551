package raftstore

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// lessor decides lease expiry. Only the leader keeps deadlines; it revokes an
// expired lease through the log, so every member deletes the same keys at the
// same revision. A new leader gives every lease its full TTL again instead of
// expiring at once the leases whose keep-alives went to the old leader (etcd's
// lessor.Promote does the same).
type lessor struct {
	s *Server

	mu        sync.Mutex // guards the fields below
	leader    bool
	term      uint64 // the term in which deadlines were set
	deadlines map[int64]time.Time
}

// lessorTick is how often the leader looks for expired leases.
const lessorTick = 200 * time.Millisecond

func newLessor(s *Server) *lessor { return &lessor{s: s} }

func (l *lessor) promote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unsafePromote()
}

// unsafePromote needs mu held.
func (l *lessor) unsafePromote() {
	l.leader = true
	l.term = l.s.raft.CurrentTerm()
	l.deadlines = map[int64]time.Time{}
	now := time.Now()
	for _, ls := range l.s.fsm.kv.Leases() {
		l.deadlines[ls.ID] = now.Add(time.Duration(ls.TTL) * time.Second)
	}
}

func (l *lessor) demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leader = false
	l.deadlines = nil
}

func (l *lessor) run() {
	t := time.NewTicker(lessorTick)
	defer t.Stop()
	for {
		select {
		case <-l.s.stopCh:
			return
		case <-t.C:
		}
		for _, id := range l.expired() {
			ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
			_, err := l.s.propose(ctx, msgLeaseRevoke, &pb.LeaseRevokeRequest{ID: id})
			cancel()
			if err != nil && !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
				l.s.log.Warn("revoking expired lease failed; will retry", "lease", id, "err", err)
				continue
			}
			l.s.log.Debug("lease expired", "lease", id)
			l.s.metrics.leasesExpired.Inc()
			l.mu.Lock()
			delete(l.deadlines, id)
			l.mu.Unlock()
		}
	}
}

// expired syncs deadlines with the replicated leases and returns those past
// their deadline.
func (l *lessor) expired() []int64 {
	leases := l.s.fsm.kv.Leases()
	l.mu.Lock()
	defer l.mu.Unlock()
	// raft's LeaderCh may coalesce a lost-and-regained leadership into one
	// signal; the state and term are the truth.
	isLeader := l.s.raft.State() == raft.Leader
	if !isLeader {
		l.leader = false
		l.deadlines = nil
		return nil
	}
	if !l.leader || l.term != l.s.raft.CurrentTerm() {
		l.unsafePromote()
	}
	now := time.Now()
	present := make(map[int64]bool, len(leases))
	var out []int64
	for _, ls := range leases {
		present[ls.ID] = true
		d, ok := l.deadlines[ls.ID]
		if !ok {
			l.deadlines[ls.ID] = now.Add(time.Duration(ls.TTL) * time.Second)
			continue
		}
		if now.After(d) {
			out = append(out, ls.ID)
		}
	}
	for id := range l.deadlines {
		if !present[id] {
			delete(l.deadlines, id)
		}
	}
	return out
}

// renew restarts a lease's TTL; the caller must be the leader.
func (l *lessor) renew(id int64) (int64, error) {
	if err := l.s.ensureReadReady(); err != nil {
		return 0, toGRPCError(err)
	}
	ttl, _, err := l.s.fsm.kv.LeaseInfo(id)
	if err != nil {
		return 0, toGRPCError(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leader {
		return 0, notLeaderStatus()
	}
	now := time.Now()
	if d, ok := l.deadlines[id]; ok && now.After(d) {
		// Expired; the revoke is on its way.
		return 0, rpctypes.ErrGRPCLeaseNotFound
	}
	l.deadlines[id] = now.Add(time.Duration(ttl) * time.Second)
	return ttl, nil
}

// remaining returns the seconds left on a lease; the caller must be leader.
func (l *lessor) remaining(id int64) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leader {
		return 0, false
	}
	d, ok := l.deadlines[id]
	if !ok {
		ttl, _, err := l.s.fsm.kv.LeaseInfo(id)
		if err != nil {
			return 0, false
		}
		return ttl, true
	}
	left := time.Until(d).Seconds()
	if left < 0 {
		return 0, true
	}
	return int64(math.Ceil(left)), true
}

// leaseTTLBounds returns etcd's minimum and maximum TTLs. The minimum keeps a
// lease alive through one leader election (etcd: 1.5 election timeouts).
func (s *Server) leaseTTLBounds() (int64, int64) {
	min := int64(math.Ceil(1.5 * s.cfg.ElectionTimeout.Seconds()))
	if min < 1 {
		min = 1
	}
	return min, 9_000_000_000
}
