package mvcc

import (
	"errors"
	"fmt"
	"sort"
)

// ErrInvalidLeaseID is returned by LeaseGrant for an ID <= 0 (the caller
// picks IDs; 0 means "no lease" everywhere in the API).
var ErrInvalidLeaseID = errors.New("mvcc: lease id must be positive")

// leaseState is a granted lease and the keys attached to it (the live keys
// whose KeyValue.Lease is the lease's ID).
type leaseState struct {
	ttl  int64
	keys map[string]struct{}
}

// LeaseGrant creates lease id with the given TTL. It does not change the
// revision.
func (s *Store) LeaseGrant(id, ttl int64) error {
	if id <= 0 {
		return fmt.Errorf("%w: %d", ErrInvalidLeaseID, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[id]; ok {
		return fmt.Errorf("%w: %x", ErrLeaseExists, id)
	}
	s.leases[id] = &leaseState{ttl: ttl, keys: map[string]struct{}{}}
	return nil
}

// LeaseRevoke deletes every key attached to lease id in one revision (in key
// order, so replicas agree on sub-revisions) and then the lease itself.
func (s *Store) LeaseRevoke(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[id]
	if !ok {
		return fmt.Errorf("%w: %x", ErrLeaseNotFound, id)
	}
	w := s.newWriter()
	for _, k := range sortedKeys(l.keys) {
		w.deleteKeys(k, nil)
	}
	delete(s.leases, id)
	s.commit(w)
	return nil
}

// LeaseInfo returns the granted TTL of lease id and its keys, sorted.
func (s *Store) LeaseInfo(id int64) (ttl int64, keys [][]byte, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.leases[id]
	if !ok {
		return 0, nil, fmt.Errorf("%w: %x", ErrLeaseNotFound, id)
	}
	return l.ttl, sortedKeys(l.keys), nil
}

// Leases returns all leases, sorted by ID.
func (s *Store) Leases() []Lease {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaseList()
}

func (st *state) leaseList() []Lease {
	out := make([]Lease, 0, len(st.leases))
	for id, l := range st.leases {
		out = append(out, Lease{ID: id, TTL: l.ttl})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// attach records key as owned by lease id. Keys whose lease does not exist
// (only possible in imported snapshots) keep their Lease field but are not
// attached to anything.
func (st *state) attach(id int64, key []byte) {
	if l, ok := st.leases[id]; ok && id != 0 {
		l.keys[string(key)] = struct{}{}
	}
}

func (st *state) detach(id int64, key []byte) {
	if l, ok := st.leases[id]; ok && id != 0 {
		delete(l.keys, string(key))
	}
}

func sortedKeys(m map[string]struct{}) [][]byte {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = []byte(k)
	}
	return out
}
