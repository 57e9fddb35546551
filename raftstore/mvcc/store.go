package mvcc

import (
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// btreeDegree is the key index fan-out (etcd's treeIndex uses 32).
const btreeDegree = 32

// Store is the in-memory MVCC state. Mutating methods (Put, DeleteRange,
// writing Txns, Compact, Lease*, Restore, Load) must be called from a single
// goroutine; Range, read-only Txns, Events, LeaseInfo, Leases, Rev,
// CompactRev and Changed may be called concurrently from any goroutine.
//
// KeyValues returned by Range, Txn, Put and DeleteRange (PrevKv) and inside
// Events are shared with the store and must not be modified by callers. The
// *Event structs themselves are fresh per call and may be modified.
type Store struct {
	// mu guards everything below. Mutations hold it for writing, reads for
	// reading; no other lock is ever taken while holding it.
	mu         sync.RWMutex
	state                    // the replicated state, replaced wholesale by Restore/Load
	changed    chan struct{} // closed when rev changes, see Changed
	chObserved atomic.Bool   // someone holds changed; set under RLock, see Changed
}

// state is everything a snapshot carries, plus the derived event log.
type state struct {
	rev        int64
	compactRev int64
	tree       *btree.BTreeG[*keyHistory]
	leases     map[int64]*leaseState
	events     []event // revisions > compactRev, in (main, sub) order
}

func newState() state {
	return state{
		rev:    1,
		tree:   btree.NewG(btreeDegree, lessHistory),
		leases: map[int64]*leaseState{},
	}
}

// New returns an empty store at revision 1 (etcd's initial revision; the
// first write gets revision 2).
func New() *Store {
	return &Store{state: newState(), changed: make(chan struct{})}
}

// Rev returns the current revision.
func (s *Store) Rev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// CompactRev returns the revision of the last compaction, 0 if none.
func (s *Store) CompactRev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.compactRev
}

// Changed returns a channel that is closed after the next change of the
// revision (or Restore/Load). Call it before reading, then wait on it if
// the read found nothing new; each call after a close returns a fresh
// channel.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.chObserved.Store(true)
	return s.changed
}

// unsafeNotify wakes everyone waiting on Changed. Callers hold mu for
// writing and have already updated the state, so no reader can get the new
// channel before it can see the new state. A channel nobody asked for is
// reused, which keeps writes without watchers allocation-free.
func (s *Store) unsafeNotify() {
	if !s.chObserved.Load() {
		return
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.chObserved.Store(false)
}

func header(rev int64) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: rev} }
