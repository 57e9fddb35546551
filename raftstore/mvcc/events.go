package mvcc

import (
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// event is one entry of the event log: a key revision and the key's
// previous live value (nil after a tombstone or for a new key).
type event struct {
	entry
	prev *mvccpb.KeyValue
}

// Events returns the changes with revision >= fromRev to keys in [key, end)
// (Range's conventions; key "" or "\x00" with end "\x00" is everything), in
// revision order. At most limit events are returned (0: no limit), but the
// events of one revision are never split. next is the revision to ask from
// next time: one past the last revision scanned, so Rev()+1 when everything
// was scanned. fromRev <= CompactRev() fails with ErrCompacted once there
// has been a compaction.
//
// Finding fromRev is a binary search over the event log, so a caught-up
// watcher costs O(log n). The Kv/PrevKv of returned events are shared and
// must not be modified; the Event structs are the caller's.
func (s *Store) Events(fromRev int64, key, end []byte, limit int) ([]*Event, int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.compactRev > 0 && fromRev <= s.compactRev {
		return nil, 0, fmt.Errorf("events from %d: %w (compacted at %d)", fromRev, ErrCompacted, s.compactRev)
	}
	evs := s.events
	i := sort.Search(len(evs), func(i int) bool { return evs[i].main() >= fromRev })
	var out []*Event
	for ; i < len(evs); i++ {
		e := &evs[i]
		if limit > 0 && len(out) >= limit && e.main() != out[len(out)-1].Kv.ModRevision {
			// Stop at a revision boundary; everything before e was scanned.
			return out, e.main(), nil
		}
		if !inRange(e.kv.Key, key, end) {
			continue
		}
		out = append(out, e.toEvent())
	}
	return out, max(s.rev+1, fromRev), nil
}

func (e *event) toEvent() *Event {
	ev := &Event{Type: mvccpb.PUT, Kv: e.kv, PrevKv: e.prev}
	if e.tomb {
		ev.Type = mvccpb.DELETE
	}
	return ev
}

// buildEvents rebuilds the event log (revisions > compactRev) from the key
// histories, for Restore and Load.
func (st *state) buildEvents() {
	var evs []event
	st.tree.Ascend(func(h *keyHistory) bool {
		var prev *mvccpb.KeyValue
		for _, e := range h.entries {
			if e.main() > st.compactRev {
				evs = append(evs, event{entry: e, prev: prev})
			}
			prev = e.kv
			if e.tomb {
				prev = nil
			}
		}
		return true
	})
	sort.Slice(evs, func(i, j int) bool { return evs[i].before(evs[j].main(), evs[j].sub) })
	st.events = evs
}

// trimEvents drops events at or before rev. The slice is re-allocated once
// the dropped prefix dominates, so compacted values can be collected.
func (st *state) trimEvents(rev int64) {
	i := sort.Search(len(st.events), func(i int) bool { return st.events[i].main() > rev })
	rest := st.events[i:]
	if i > len(rest) {
		rest = append([]event(nil), rest...)
	}
	st.events = rest
}
