package mvcc

import "fmt"

// Compact discards the history not needed to read at revisions >= rev.
// Reads at rev itself keep working; reads before it fail with
// ErrCompacted. It does not change the revision.
//
// It walks every key, O(keys + revisions dropped); etcd does the same
// (treeIndex.Compact) and, like there, compaction is rare.
func (s *Store) Compact(rev int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case rev > s.rev:
		return fmt.Errorf("compact to %d at revision %d: %w", rev, s.rev, ErrFutureRev)
	case rev <= s.compactRev:
		return fmt.Errorf("compact to %d, already compacted at %d: %w", rev, s.compactRev, ErrCompacted)
	}
	s.compactTo(rev)
	return nil
}

func (st *state) compactTo(rev int64) {
	var replaced, removed []*keyHistory
	st.tree.Ascend(func(h *keyHistory) bool {
		switch c := h.compacted(rev); {
		case c == nil:
			removed = append(removed, h)
		case c != h:
			replaced = append(replaced, c)
		}
		return true
	})
	for _, h := range removed {
		st.tree.Delete(h)
	}
	for _, h := range replaced {
		st.tree.ReplaceOrInsert(h)
	}
	st.compactRev = rev
	st.trimEvents(rev)
}
