package mvcc

import (
	"bytes"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// entry is one stored revision of one key. kv is shared with readers, the
// event log and views, so it is never modified after it is created. A
// tombstone's kv has only Key and ModRevision set (as etcd reports it to
// watchers).
type entry struct {
	kv   *mvccpb.KeyValue
	sub  int64
	tomb bool
}

func (e entry) main() int64 { return e.kv.ModRevision }

// before reports whether e sorts before (main, sub).
func (e entry) before(main, sub int64) bool {
	return e.main() < main || (e.main() == main && e.sub < sub)
}

// keyHistory is every retained revision of one key, oldest first. It is an
// item of the key btree, which views share copy-on-write, so a keyHistory is
// never modified once inserted: a change inserts a replacement (see with).
type keyHistory struct {
	key     []byte
	entries []entry
}

func lessHistory(a, b *keyHistory) bool { return bytes.Compare(a.key, b.key) < 0 }

// with returns a new history with e appended. The new history may share the
// backing array with h: that is safe because only the newest history of a key
// is ever appended to, and older ones (held by views) never look past their
// own length.
func (h *keyHistory) with(e entry) *keyHistory {
	return &keyHistory{key: h.key, entries: append(h.entries, e)}
}

// latest returns the newest entry, if any.
func (h *keyHistory) latest() (entry, bool) {
	if h == nil || len(h.entries) == 0 {
		return entry{}, false
	}
	return h.entries[len(h.entries)-1], true
}

// live returns the key's value at the newest revision, nil if deleted.
func (h *keyHistory) live() *mvccpb.KeyValue {
	e, ok := h.latest()
	if !ok || e.tomb {
		return nil
	}
	return e.kv
}

// at returns the key's value as of main revision rev, nil if the key did not
// exist then (or that part of its history was compacted).
func (h *keyHistory) at(rev int64) *mvccpb.KeyValue {
	// first entry with main > rev; the one before it is the answer.
	i := sort.Search(len(h.entries), func(i int) bool { return h.entries[i].main() > rev })
	if i == 0 || h.entries[i-1].tomb {
		return nil
	}
	return h.entries[i-1].kv
}

// compacted returns the history with everything not needed to read at
// revisions >= rev removed: the newest entry at or before rev is kept unless
// it is a tombstone, older ones are dropped. It returns nil when nothing is
// left, and h itself when nothing changes.
func (h *keyHistory) compacted(rev int64) *keyHistory {
	i := sort.Search(len(h.entries), func(i int) bool { return h.entries[i].main() > rev })
	keep := i - 1 // the newest entry <= rev
	if keep >= 0 && h.entries[keep].tomb {
		keep++
	}
	if keep <= 0 {
		return h
	}
	if keep == len(h.entries) {
		return nil
	}
	// Copy so the dropped prefix (possibly large values) can be collected.
	rest := make([]entry, len(h.entries)-keep)
	copy(rest, h.entries[keep:])
	return &keyHistory{key: h.key, entries: rest}
}

// inRange reports whether key is in the range [start, end) with etcd's
// conventions: an empty end means the single key start, end "\x00" means
// every key >= start.
func inRange(key, start, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(key, start)
	case isFromKey(end):
		return bytes.Compare(key, start) >= 0
	default:
		return bytes.Compare(key, start) >= 0 && bytes.Compare(key, end) < 0
	}
}

func isFromKey(end []byte) bool { return len(end) == 1 && end[0] == 0 }
