package mvcc

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sort"

	"github.com/google/btree"
)

// Snapshot format (all integers varints unless noted):
//
//	magic "SYNODMVC", uvarint version (1)
//	rev, compactRev
//	uvarint #leases, then per lease: id, ttl (sorted by id)
//	uvarint #keys, then per key in key order:
//	  uvarint len, key bytes, uvarint #entries, then per entry oldest first:
//	    byte flags (1 = tombstone), sub,
//	    tombstone: main revision; live: uvarint len, mvccpb.KeyValue without Key
//	4 bytes big-endian CRC-32C of everything above
//
// Lease attachments are not written: they follow from the live keys' Lease.
const (
	snapMagic   = "SYNODMVC"
	snapVersion = 1
	flagTomb    = 1
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// view is an immutable copy of the state; the tree is a copy-on-write clone
// and key histories are never modified, so it can be read while the store
// moves on.
type view struct {
	rev, compactRev int64
	tree            *btree.BTreeG[*keyHistory]
	leases          []Lease
}

// View returns a copy-on-write view of the current state. It costs
// O(leases) and is meant to be called on the goroutine that mutates.
func (s *Store) View() View {
	// The write lock because Clone touches the tree's copy-on-write context.
	s.mu.Lock()
	defer s.mu.Unlock()
	return &view{rev: s.rev, compactRev: s.compactRev, tree: s.tree.Clone(), leases: s.leaseList()}
}

func (v *view) Rev() int64        { return v.rev }
func (v *view) CompactRev() int64 { return v.compactRev }
func (v *view) Leases() []Lease   { return append([]Lease(nil), v.leases...) }

// Records calls fn for every stored key revision in (main, sub) order. It
// sorts all revisions first, O(n log n).
func (v *view) Records(fn func(Record) error) error {
	var all []entry
	v.tree.Ascend(func(h *keyHistory) bool {
		all = append(all, h.entries...)
		return true
	})
	sort.Slice(all, func(i, j int) bool { return all[i].before(all[j].main(), all[j].sub) })
	for _, e := range all {
		if err := fn(Record{KV: *e.kv, Sub: e.sub, Tombstone: e.tomb}); err != nil {
			return err
		}
	}
	return nil
}

// snapWriter accumulates the first write error and the checksum, so the
// encoder reads straight through.
type snapWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	err error
	buf [binary.MaxVarintLen64]byte
}

func (sw *snapWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	n, err := sw.w.Write(b)
	sw.n += int64(n)
	sw.err = err
	sw.crc.Write(b)
}

func (sw *snapWriter) varint(x int64)   { sw.write(sw.buf[:binary.PutVarint(sw.buf[:], x)]) }
func (sw *snapWriter) uvarint(x uint64) { sw.write(sw.buf[:binary.PutUvarint(sw.buf[:], x)]) }
func (sw *snapWriter) bytes(b []byte)   { sw.uvarint(uint64(len(b))); sw.write(b) }

// WriteTo writes the view in the format described above.
func (v *view) WriteTo(w io.Writer) (int64, error) {
	sw := &snapWriter{w: bufio.NewWriterSize(w, 1<<16), crc: crc32.New(crcTable)}
	sw.write([]byte(snapMagic))
	sw.uvarint(snapVersion)
	sw.varint(v.rev)
	sw.varint(v.compactRev)
	sw.uvarint(uint64(len(v.leases)))
	for _, l := range v.leases {
		sw.varint(l.ID)
		sw.varint(l.TTL)
	}
	sw.uvarint(uint64(v.tree.Len()))
	var pbuf []byte
	v.tree.Ascend(func(h *keyHistory) bool {
		sw.bytes(h.key)
		sw.uvarint(uint64(len(h.entries)))
		for _, e := range h.entries {
			if e.tomb {
				sw.write([]byte{flagTomb})
				sw.varint(e.sub)
				sw.varint(e.main())
				continue
			}
			sw.write([]byte{0})
			sw.varint(e.sub)
			kv := *e.kv
			kv.Key = nil // it is the history's key
			pbuf = growTo(pbuf, kv.Size())
			n, err := kv.MarshalToSizedBuffer(pbuf)
			if err != nil && sw.err == nil {
				sw.err = fmt.Errorf("mvcc: marshal %q: %w", h.key, err)
			}
			sw.bytes(pbuf[len(pbuf)-n:])
		}
		return sw.err == nil
	})
	if sw.err == nil {
		var sum [4]byte
		binary.BigEndian.PutUint32(sum[:], sw.crc.Sum32())
		sw.write(sum[:])
	}
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return sw.n, fmt.Errorf("mvcc: write snapshot: %w", sw.err)
	}
	return sw.n, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
