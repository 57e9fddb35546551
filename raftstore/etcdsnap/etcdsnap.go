package etcdsnap

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// Record is one stored revision of one key (mirrors synod's mvcc.Record).
// KV.ModRevision is the main revision and Sub the sub-revision within it.
// A tombstone has only KV.Key and KV.ModRevision set.
type Record struct {
	KV        mvccpb.KeyValue
	Sub       int64
	Tombstone bool
}

// Lease is a granted lease: its ID and granted TTL in seconds.
type Lease struct {
	ID, TTL int64
}

// Header is the scalar state of a snapshot.
type Header struct {
	Rev, CompactRev       int64  // store revision, last compaction revision
	ConsistentIndex, Term uint64 // raft index/term the snapshot reflects
}

// Snapshot is a whole store state.
type Snapshot struct {
	Rev, CompactRev       int64    // store revision, last compaction revision
	ConsistentIndex, Term uint64   // raft index/term the snapshot reflects (meta bucket)
	Records               []Record // in (main, sub) order
	Leases                []Lease
}

// Header returns s's scalar fields.
func (s *Snapshot) Header() Header {
	return Header{Rev: s.Rev, CompactRev: s.CompactRev, ConsistentIndex: s.ConsistentIndex, Term: s.Term}
}

// ErrFormat is wrapped by every error Read returns for a file that is not a
// valid etcd snapshot (bad hash, bad bbolt file, bad layout).
var ErrFormat = errors.New("etcdsnap: invalid etcd snapshot")

var (
	bucketKey   = []byte("key")
	bucketMeta  = []byte("meta")
	bucketLease = []byte("lease")
	// Buckets a fresh etcd backend has; written empty.
	otherBuckets = []string{"alarm", "auth", "authRoles", "authUsers", "cluster", "members", "members_removed"}

	metaConsistentIndex  = []byte("consistent_index")
	metaTerm             = []byte("term")
	metaScheduledCompact = []byte("scheduledCompactRev")
	metaFinishedCompact  = []byte("finishedCompactRev")
	metaSynodRev         = []byte("synod_rev") // synod-specific: exact store revision
)

const (
	revBytesLen       = 8 + 1 + 8
	markedRevBytesLen = revBytesLen + 1
	markTombstone     = 't'

	// recordsPerTx bounds one bbolt write transaction while building the db.
	recordsPerTx = 10000
)

// revToBytes encodes (main, sub) as etcd's mvcc revToBytes does, with the
// tombstone mark appended when tomb is set.
func revToBytes(main, sub int64, tomb bool) []byte {
	b := make([]byte, revBytesLen, markedRevBytesLen)
	binary.BigEndian.PutUint64(b, uint64(main))
	b[8] = '_'
	binary.BigEndian.PutUint64(b[9:], uint64(sub))
	if tomb {
		b = append(b, markTombstone)
	}
	return b
}

// bytesToRev decodes a key-bucket key; ok is false if it is malformed.
func bytesToRev(b []byte) (main, sub int64, tomb, ok bool) {
	switch {
	case len(b) == revBytesLen:
	case len(b) == markedRevBytesLen && b[revBytesLen] == markTombstone:
		tomb = true
	default:
		return 0, 0, false, false
	}
	if b[8] != '_' {
		return 0, 0, false, false
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[9:])), tomb, true
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// encodeLease marshals leasepb.Lease{ID, TTL} by hand (proto3: zero fields
// omitted; RemainingTTL=3 is never set). leasepb lives in the etcd server
// module, which this package deliberately does not import.
func encodeLease(l Lease) []byte {
	var b []byte
	if l.ID != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(l.ID))
	}
	if l.TTL != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(l.TTL))
	}
	return b
}

// decodeLease parses a leasepb.Lease, skipping unknown fields.
func decodeLease(b []byte) (l Lease, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == 1 || num == 2 || num == 3) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return l, protowire.ParseError(n)
			}
			b = b[n:]
			switch num {
			case 1:
				l.ID = int64(v)
			case 2:
				l.TTL = int64(v)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return l, nil
}

// Write writes s as an etcd-layout bbolt database followed by its sha256 to
// w. The database is built in a temporary file in dir ("" = os.TempDir()),
// which is removed. It returns the number of bytes written to w.
func Write(w io.Writer, dir string, s *Snapshot) (int64, error) {
	recs := func(fn func(Record) error) error {
		for _, r := range s.Records {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	return WriteStream(w, dir, s.Header(), recs, s.Leases)
}

// WriteStream is Write with records pulled from an iterator (such as
// mvcc.View.Records after converting each record): records calls fn for
// every record in (main, sub) order and stops on fn's first error.
func WriteStream(w io.Writer, dir string, hdr Header, records func(fn func(Record) error) error, leases []Lease) (int64, error) {
	if hdr.CompactRev < 0 || hdr.Rev < 0 || hdr.CompactRev > hdr.Rev {
		return 0, fmt.Errorf("etcdsnap: bad revisions: rev %d, compact rev %d", hdr.Rev, hdr.CompactRev)
	}
	f, err := os.CreateTemp(dir, "etcdsnap-*.db")
	if err != nil {
		return 0, fmt.Errorf("etcdsnap: %w", err)
	}
	name := f.Name()
	defer os.Remove(name)
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("etcdsnap: %w", err)
	}
	if err := buildDB(name, hdr, records, leases); err != nil {
		return 0, err
	}

	f, err = os.Open(name)
	if err != nil {
		return 0, fmt.Errorf("etcdsnap: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), f)
	if err != nil {
		return n, fmt.Errorf("etcdsnap: writing snapshot: %w", err)
	}
	m, err := w.Write(h.Sum(nil))
	n += int64(m)
	if err != nil {
		return n, fmt.Errorf("etcdsnap: writing snapshot hash: %w", err)
	}
	return n, nil
}

func buildDB(name string, hdr Header, records func(fn func(Record) error) error, leases []Lease) (err error) {
	db, err := bolt.Open(name, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		return fmt.Errorf("etcdsnap: creating db: %w", err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("etcdsnap: closing db: %w", cerr)
		}
	}()

	// Buckets, meta and leases in one transaction.
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range append([]string{"key", "meta", "lease"}, otherBuckets...) {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		var perr error
		put := func(k, v []byte) {
			if perr == nil {
				perr = meta.Put(k, v)
			}
		}
		// etcd never stores a zero consistent index or term.
		if hdr.ConsistentIndex != 0 {
			put(metaConsistentIndex, u64(hdr.ConsistentIndex))
		}
		if hdr.Term != 0 {
			put(metaTerm, u64(hdr.Term))
		}
		// etcd writes both on compaction; on restore it takes the current
		// revision as max(last key revision, finishedCompactRev).
		if hdr.CompactRev > 0 {
			put(metaScheduledCompact, revToBytes(hdr.CompactRev, 0, false))
			put(metaFinishedCompact, revToBytes(hdr.CompactRev, 0, false))
		}
		put(metaSynodRev, u64(uint64(hdr.Rev)))
		if perr != nil {
			return perr
		}
		lb := tx.Bucket(bucketLease)
		for _, l := range leases {
			if l.ID == 0 {
				return errors.New("lease with ID 0")
			}
			if err := lb.Put(u64(uint64(l.ID)), encodeLease(l)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("etcdsnap: writing db: %w", err)
	}

	// Records, in batches of recordsPerTx per transaction.
	var (
		tx       *bolt.Tx
		kb       *bolt.Bucket
		inTx     int
		last     = [2]int64{-1, -1}
		lastMain int64
	)
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	err = records(func(r Record) error {
		main, sub := r.KV.ModRevision, r.Sub
		if main <= 0 || sub < 0 {
			return fmt.Errorf("record %q: bad revision (%d, %d)", r.KV.Key, main, sub)
		}
		if len(r.KV.Key) == 0 {
			return fmt.Errorf("record at revision (%d, %d): empty key", main, sub)
		}
		if main < last[0] || (main == last[0] && sub <= last[1]) {
			return fmt.Errorf("record %q: revision (%d, %d) not after (%d, %d)", r.KV.Key, main, sub, last[0], last[1])
		}
		last = [2]int64{main, sub}
		lastMain = main
		if tx == nil {
			var err error
			if tx, err = db.Begin(true); err != nil {
				return err
			}
			kb = tx.Bucket(bucketKey)
			kb.FillPercent = 1 // keys arrive in order: pack pages full
		}
		kv := &r.KV
		if r.Tombstone {
			kv = &mvccpb.KeyValue{Key: r.KV.Key} // as etcd stores a tombstone
		}
		// A fresh buffer each time: bbolt keeps the value until commit.
		val, err := kv.Marshal()
		if err != nil {
			return fmt.Errorf("record %q: %w", r.KV.Key, err)
		}
		if err := kb.Put(revToBytes(main, sub, r.Tombstone), val); err != nil {
			return err
		}
		if inTx++; inTx >= recordsPerTx {
			err := tx.Commit()
			tx, kb, inTx = nil, nil, 0
			return err
		}
		return nil
	})
	if err == nil && tx != nil {
		err = tx.Commit()
		tx = nil
	}
	if err == nil && lastMain > hdr.Rev {
		err = fmt.Errorf("store revision %d is below last record's revision %d", hdr.Rev, lastMain)
	}
	if err != nil {
		return fmt.Errorf("etcdsnap: writing records: %w", err)
	}
	return nil
}

// Read opens the etcd snapshot at path and returns its contents. A trailing
// sha256 (present when the file size % 512 == 32) is always verified; a file
// without one (a bare db copied from a data directory) is accepted only
// when skipHashCheck is set. bbolt's consistency check is run, and every
// malformed entry is reported as an error wrapping ErrFormat; Read does not
// panic on corrupt input.
func Read(path string, skipHashCheck bool) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("etcdsnap: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("etcdsnap: %w", err)
	}
	size := st.Size()
	if size == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrFormat, path)
	}
	dataSize := size
	if size%512 == sha256.Size {
		dataSize -= sha256.Size
		h := sha256.New()
		if _, err := io.CopyN(h, f, size-sha256.Size); err != nil {
			return nil, fmt.Errorf("etcdsnap: reading %s: %w", path, err)
		}
		want := make([]byte, sha256.Size)
		if _, err := io.ReadFull(f, want); err != nil {
			return nil, fmt.Errorf("etcdsnap: reading %s: %w", path, err)
		}
		if got := h.Sum(nil); !bytes.Equal(got, want) {
			return nil, fmt.Errorf("%w: %s: sha256 mismatch: file says %x, data hashes to %x (corrupt or truncated)", ErrFormat, path, want, got)
		}
	} else if !skipHashCheck {
		return nil, fmt.Errorf("%w: %s has no trailing sha256 (size %d is not 512*k+32: truncated, or a bare db file, which needs skipHashCheck)", ErrFormat, path, size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("etcdsnap: %w", err)
	}
	if err := checkBolt(f, dataSize); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	return readDB(path)
}

// readDB reads the bbolt part of the file, once checkBolt has vetted its
// structure. As a second line of defence, a bbolt panic or a fault on its
// mmap in this goroutine is turned into an error; the freelist is loaded
// here (PreLoadFreelist) rather than in tx.Check's goroutine.
func readDB(path string) (s *Snapshot, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%w: %s: corrupt database: %v", ErrFormat, path, r)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: opening bbolt database: %v", ErrFormat, path, err)
	}
	defer db.Close()
	s = &Snapshot{}
	err = db.View(func(tx *bolt.Tx) error { return readTx(tx, s) })
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	return s, nil
}

func readTx(tx *bolt.Tx, s *Snapshot) error {
	var errs []string
	for err := range tx.Check() {
		if len(errs) < 10 {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bbolt consistency check failed: %s", strings.Join(errs, "; "))
	}

	kb := tx.Bucket(bucketKey)
	if kb == nil {
		return errors.New(`no "key" bucket: not an etcd backend database`)
	}
	var maxMain int64
	err := kb.ForEach(func(k, v []byte) error {
		main, sub, tomb, ok := bytesToRev(k)
		if !ok || main <= 0 || sub < 0 {
			return fmt.Errorf("key bucket: malformed revision key %x", k)
		}
		var r Record
		if err := r.KV.Unmarshal(v); err != nil {
			return fmt.Errorf("key bucket: revision (%d, %d): bad KeyValue: %v", main, sub, err)
		}
		if len(r.KV.Key) == 0 {
			return fmt.Errorf("key bucket: revision (%d, %d): empty key", main, sub)
		}
		if tomb {
			r.KV = mvccpb.KeyValue{Key: r.KV.Key, ModRevision: main}
		} else if r.KV.ModRevision != main {
			return fmt.Errorf("key bucket: revision (%d, %d): KeyValue has mod_revision %d", main, sub, r.KV.ModRevision)
		}
		r.Sub, r.Tombstone = sub, tomb
		s.Records = append(s.Records, r)
		maxMain = main // keys iterate in revision order
		return nil
	})
	if err != nil {
		return err
	}

	var synodRev int64 = -1
	if mb := tx.Bucket(bucketMeta); mb != nil {
		get8 := func(name []byte) (uint64, bool, error) {
			v := mb.Get(name)
			if v == nil {
				return 0, false, nil
			}
			if len(v) != 8 {
				return 0, false, fmt.Errorf("meta %q: %d bytes, want 8", name, len(v))
			}
			return binary.BigEndian.Uint64(v), true, nil
		}
		var err error
		if s.ConsistentIndex, _, err = get8(metaConsistentIndex); err != nil {
			return err
		}
		if s.Term, _, err = get8(metaTerm); err != nil {
			return err
		}
		rev, ok, err := get8(metaSynodRev)
		if err != nil {
			return err
		}
		if ok {
			synodRev = int64(rev)
		}
		if v := mb.Get(metaFinishedCompact); v != nil {
			main, _, _, ok := bytesToRev(v)
			if !ok || main < 0 {
				return fmt.Errorf("meta %q: malformed revision %x", metaFinishedCompact, v)
			}
			s.CompactRev = main
		}
	}
	// As etcd restores it: the last revision seen, or the compaction
	// revision if everything up to it was compacted away.
	s.Rev = max(maxMain, s.CompactRev)
	if synodRev >= 0 {
		if synodRev < s.Rev {
			return fmt.Errorf("meta %q = %d is below revision %d", metaSynodRev, synodRev, s.Rev)
		}
		s.Rev = synodRev
	}

	if lb := tx.Bucket(bucketLease); lb != nil {
		err := lb.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("lease bucket: malformed lease ID key %x", k)
			}
			l, err := decodeLease(v)
			if err != nil {
				return fmt.Errorf("lease bucket: lease %x: %v", k, err)
			}
			if id := int64(binary.BigEndian.Uint64(k)); l.ID != id {
				return fmt.Errorf("lease bucket: key says lease %x, value says %x", id, l.ID)
			}
			s.Leases = append(s.Leases, l)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
