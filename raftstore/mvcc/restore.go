package mvcc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// maxSnapItem bounds any single length read from a snapshot, so garbage
// cannot make Restore allocate gigabytes (values are at most 1.5 MiB).
const maxSnapItem = 64 << 20

// Restore replaces the whole state with a snapshot written by View.WriteTo.
// On error (wrapping ErrSnapshotFormat for bad input) the old state is left
// intact. If r is not an io.ByteReader it is buffered, and may be read past
// the snapshot's end.
func (s *Store) Restore(r io.Reader) error {
	st, err := decodeSnapshot(r)
	if err != nil {
		return fmt.Errorf("mvcc: restore: %w", err)
	}
	s.replace(st)
	return nil
}

// Load replaces the whole state with plain records (from an etcd-format
// snapshot): recs in (main, sub) order, none after rev. History older than
// compactRev that is not needed is dropped, and live keys are reattached to
// their leases. On error the old state is left intact. The store keeps the
// records' byte slices: callers must not modify them afterwards.
func (s *Store) Load(rev, compactRev int64, recs []Record, leases []Lease) error {
	byKey := map[string][]entry{}
	for i := range recs {
		r := &recs[i]
		if i > 0 {
			p := &recs[i-1]
			if p.KV.ModRevision > r.KV.ModRevision || (p.KV.ModRevision == r.KV.ModRevision && p.Sub >= r.Sub) {
				return fmt.Errorf("mvcc: load: %w: record %d (%d,%d) out of order", ErrSnapshotFormat, i, r.KV.ModRevision, r.Sub)
			}
		}
		kv := r.KV // a copy the store owns
		if r.Tombstone {
			kv = mvccpb.KeyValue{Key: r.KV.Key, ModRevision: r.KV.ModRevision}
		}
		byKey[string(kv.Key)] = append(byKey[string(kv.Key)], entry{kv: &kv, sub: r.Sub, tomb: r.Tombstone})
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hs := make([]*keyHistory, len(keys))
	for i, k := range keys {
		es := byKey[k]
		hs[i] = &keyHistory{key: es[0].kv.Key, entries: es}
	}
	st, err := buildState(rev, compactRev, hs, leases)
	if err != nil {
		return fmt.Errorf("mvcc: load: %w", err)
	}
	s.replace(st)
	return nil
}

func (s *Store) replace(st state) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = st
	s.unsafeNotify()
}

// buildState validates decoded data and derives the rest of the state
// (lease attachments, event log). hs must be sorted by key.
func buildState(rev, compactRev int64, hs []*keyHistory, leases []Lease) (state, error) {
	st := newState()
	if rev < 1 || compactRev < 0 || compactRev > rev {
		return st, fmt.Errorf("%w: revision %d, compact revision %d", ErrSnapshotFormat, rev, compactRev)
	}
	st.rev, st.compactRev = rev, compactRev
	for _, l := range leases {
		if l.ID <= 0 {
			return st, fmt.Errorf("%w: lease id %d", ErrSnapshotFormat, l.ID)
		}
		if _, dup := st.leases[l.ID]; dup {
			return st, fmt.Errorf("%w: duplicate lease %x", ErrSnapshotFormat, l.ID)
		}
		st.leases[l.ID] = &leaseState{ttl: l.TTL, keys: map[string]struct{}{}}
	}
	for i, h := range hs {
		if i > 0 && bytes.Compare(hs[i-1].key, h.key) >= 0 {
			return st, fmt.Errorf("%w: key %q out of order", ErrSnapshotFormat, h.key)
		}
		if err := validateHistory(h, rev); err != nil {
			return st, err
		}
		// Imported snapshots may still hold history a pending compaction
		// would have dropped.
		if h = h.compacted(compactRev); h == nil {
			continue
		}
		st.tree.ReplaceOrInsert(h)
		if kv := h.live(); kv != nil {
			st.attach(kv.Lease, h.key)
		}
	}
	st.buildEvents()
	for i := 1; i < len(st.events); i++ {
		if p, e := st.events[i-1], st.events[i]; p.main() == e.main() && p.sub == e.sub {
			return st, fmt.Errorf("%w: revision (%d,%d) used by %q and %q", ErrSnapshotFormat, e.main(), e.sub, p.kv.Key, e.kv.Key)
		}
	}
	return st, nil
}

func validateHistory(h *keyHistory, rev int64) error {
	if len(h.key) == 0 || len(h.entries) == 0 {
		return fmt.Errorf("%w: empty key or history", ErrSnapshotFormat)
	}
	for i, e := range h.entries {
		kv := e.kv
		switch {
		case !bytes.Equal(kv.Key, h.key):
			return fmt.Errorf("%w: key %q in history of %q", ErrSnapshotFormat, kv.Key, h.key)
		case kv.ModRevision < 1 || kv.ModRevision > rev:
			return fmt.Errorf("%w: key %q revision %d outside [1,%d]", ErrSnapshotFormat, h.key, kv.ModRevision, rev)
		case e.sub < 0:
			return fmt.Errorf("%w: key %q negative sub-revision", ErrSnapshotFormat, h.key)
		case i > 0 && !h.entries[i-1].before(kv.ModRevision, e.sub):
			return fmt.Errorf("%w: key %q revision %d out of order", ErrSnapshotFormat, h.key, kv.ModRevision)
		case !e.tomb && (kv.Version < 1 || kv.CreateRevision < 1 || kv.CreateRevision > kv.ModRevision):
			return fmt.Errorf("%w: key %q revision %d: version %d, create revision %d", ErrSnapshotFormat, h.key, kv.ModRevision, kv.Version, kv.CreateRevision)
		case i > 0 && !e.tomb && !continues(h.entries[i-1], kv):
			return fmt.Errorf("%w: key %q revision %d: version %d, create revision %d do not follow the previous revision", ErrSnapshotFormat, h.key, kv.ModRevision, kv.Version, kv.CreateRevision)
		}
	}
	return nil
}

// continues reports whether live kv is a valid successor of prev: the next
// version of the same generation, or a new generation after a tombstone.
func continues(prev entry, kv *mvccpb.KeyValue) bool {
	if prev.tomb {
		return kv.Version == 1 && kv.CreateRevision == kv.ModRevision
	}
	return kv.Version == prev.kv.Version+1 && kv.CreateRevision == prev.kv.CreateRevision
}

// snapReader reads the snapshot format, checksumming what it consumes.
type snapReader struct {
	r   io.ByteReader
	rr  io.Reader
	crc hash.Hash32
	one [1]byte
}

func (sr *snapReader) ReadByte() (byte, error) {
	b, err := sr.r.ReadByte()
	if err == nil {
		sr.one[0] = b
		sr.crc.Write(sr.one[:])
	}
	return b, err
}

func (sr *snapReader) full(b []byte) error {
	if _, err := io.ReadFull(sr.rr, b); err != nil {
		return err
	}
	sr.crc.Write(b)
	return nil
}

func (sr *snapReader) varint() (int64, error)   { return binary.ReadVarint(sr) }
func (sr *snapReader) uvarint() (uint64, error) { return binary.ReadUvarint(sr) }

func (sr *snapReader) bytes() ([]byte, error) {
	n, err := sr.uvarint()
	if err != nil {
		return nil, err
	}
	if n > maxSnapItem {
		return nil, fmt.Errorf("%w: item of %d bytes", ErrSnapshotFormat, n)
	}
	b := make([]byte, n)
	return b, sr.full(b)
}

func decodeSnapshot(r io.Reader) (state, error) {
	br, ok := r.(interface {
		io.Reader
		io.ByteReader
	})
	if !ok {
		br = bufio.NewReader(r)
	}
	sr := &snapReader{r: br, rr: br, crc: crc32.New(crcTable)}
	st, err := sr.decode()
	if err != nil {
		if !errors.Is(err, ErrSnapshotFormat) {
			// Truncation and varint overflow are format errors too.
			err = fmt.Errorf("%w: %w", ErrSnapshotFormat, err)
		}
		return st, err
	}
	return st, nil
}

func (sr *snapReader) decode() (state, error) {
	magic := make([]byte, len(snapMagic))
	if err := sr.full(magic); err != nil {
		return state{}, err
	}
	if string(magic) != snapMagic {
		return state{}, fmt.Errorf("%w: bad magic %q", ErrSnapshotFormat, magic)
	}
	if v, err := sr.uvarint(); err != nil || v != snapVersion {
		return state{}, fmt.Errorf("%w: unsupported version %d (%v)", ErrSnapshotFormat, v, err)
	}
	var hdr [2]int64
	for i := range hdr {
		v, err := sr.varint()
		if err != nil {
			return state{}, err
		}
		hdr[i] = v
	}
	leases, err := sr.leases()
	if err != nil {
		return state{}, err
	}
	hs, err := sr.histories()
	if err != nil {
		return state{}, err
	}
	want := sr.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(sr.rr, sum[:]); err != nil {
		return state{}, err
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return state{}, fmt.Errorf("%w: checksum %08x, computed %08x", ErrSnapshotFormat, got, want)
	}
	return buildState(hdr[0], hdr[1], hs, leases)
}

func (sr *snapReader) leases() ([]Lease, error) {
	n, err := sr.uvarint()
	if err != nil {
		return nil, err
	}
	var out []Lease
	for i := uint64(0); i < n; i++ {
		var l Lease
		if l.ID, err = sr.varint(); err != nil {
			return nil, err
		}
		if l.TTL, err = sr.varint(); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

func (sr *snapReader) histories() ([]*keyHistory, error) {
	n, err := sr.uvarint()
	if err != nil {
		return nil, err
	}
	var hs []*keyHistory
	for i := uint64(0); i < n; i++ {
		key, err := sr.bytes()
		if err != nil {
			return nil, err
		}
		ne, err := sr.uvarint()
		if err != nil {
			return nil, err
		}
		h := &keyHistory{key: key}
		for j := uint64(0); j < ne; j++ {
			e, err := sr.entry(key)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", key, err)
			}
			h.entries = append(h.entries, e)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

func (sr *snapReader) entry(key []byte) (entry, error) {
	flags, err := sr.ReadByte()
	if err != nil {
		return entry{}, err
	}
	if flags&^flagTomb != 0 {
		return entry{}, fmt.Errorf("%w: flags %#x", ErrSnapshotFormat, flags)
	}
	sub, err := sr.varint()
	if err != nil {
		return entry{}, err
	}
	if flags&flagTomb != 0 {
		main, err := sr.varint()
		if err != nil {
			return entry{}, err
		}
		return entry{kv: &mvccpb.KeyValue{Key: key, ModRevision: main}, sub: sub, tomb: true}, nil
	}
	b, err := sr.bytes()
	if err != nil {
		return entry{}, err
	}
	kv := &mvccpb.KeyValue{}
	if err := kv.Unmarshal(b); err != nil {
		return entry{}, fmt.Errorf("%w: %w", ErrSnapshotFormat, err)
	}
	kv.Key = key
	return entry{kv: kv, sub: sub}, nil
}
