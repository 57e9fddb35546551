package etcdsnap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
)

// checkBolt validates the page structure of the bbolt database held in the
// first size bytes of r, before bbolt is let near it. bbolt trusts page
// pointers in the file: on a corrupt file it faults on its mmap or panics,
// and it does so partly in goroutines of its own (tx.Check, and the free
// page scan of a database without a synced freelist), where no recover can
// catch it. So every page reachable from the meta page is checked here to
// lie inside the file, to be referenced once, to be of the expected type,
// to hold its elements and keys inside it, and to keep its keys in the
// order bbolt's own check demands.
//
// The layout (bbolt's internal/common, native byte order):
//
//	page header: id u64, flags u16, count u16, overflow u32        (16 bytes)
//	meta:        magic u32, version u32, pageSize u32, flags u32,
//	             root u64, sequence u64, freelist u64, pgid u64, txid u64,
//	             checksum u64 = fnv64a of the preceding 56 bytes
//	branch elem: pos u32, ksize u32, pgid u64; key at elem+pos
//	leaf elem:   flags u32, pos u32, ksize u32, vsize u32; key at elem+pos,
//	             value after it; flags&1: the value is a bucket header
//	             (root u64, sequence u64), followed by an inline leaf page
//	             when root is 0
//	freelist:    count (0xFFFF: the count is the first u64), then page ids
func checkBolt(r io.ReaderAt, size int64) error {
	c := &boltChecker{r: r}
	m, err := c.readMeta(size)
	if err != nil {
		return err
	}
	c.hwm = m.pgid
	if c.hwm < 3 || m.root < 2 || m.root >= c.hwm {
		return fmt.Errorf("bbolt meta: bad page counts (root %d, high water mark %d)", m.root, c.hwm)
	}
	if c.hwm > uint64(size)/c.pageSize {
		return fmt.Errorf("bbolt database is truncated: it has %d pages of %d bytes, the file holds %d bytes", c.hwm, c.pageSize, size)
	}
	c.seen = make([]bool, c.hwm)
	if m.freelist != ^uint64(0) {
		if err := c.freelist(m.freelist); err != nil {
			return err
		}
	}
	_, err = c.tree(m.root, nil, nil, 0)
	return err
}

const (
	pageHeaderSize = 16
	elemSize       = 16
	branchPageFlag = 0x01
	leafPageFlag   = 0x02
	freelistFlag   = 0x10
	bucketLeafFlag = 0x01
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	maxDepth       = 1000 // b-tree depth plus bucket nesting
)

var ne = binary.NativeEndian

type boltMeta struct {
	pageSize, root, freelist, pgid, txid uint64
}

type boltChecker struct {
	r        io.ReaderAt
	pageSize uint64
	hwm      uint64
	seen     []bool
}

// parseMeta parses and validates the meta page in b; ok is false if invalid.
func parseMeta(b []byte) (m boltMeta, ok bool) {
	if len(b) < pageHeaderSize+64 {
		return m, false
	}
	b = b[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(b[:56])
	if ne.Uint32(b) != boltMagic || ne.Uint32(b[4:]) != boltVersion || ne.Uint64(b[56:]) != h.Sum64() {
		return m, false
	}
	return boltMeta{
		pageSize: uint64(ne.Uint32(b[8:])),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		pgid:     ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
	}, true
}

// readMeta finds the page size and picks the meta page bbolt would use.
func (c *boltChecker) readMeta(size int64) (boltMeta, error) {
	read := func(off int64) []byte {
		b := make([]byte, pageHeaderSize+64)
		if off+int64(len(b)) > size {
			return nil
		}
		if _, err := c.r.ReadAt(b, off); err != nil {
			return nil
		}
		return b
	}
	m0, ok0 := parseMeta(read(0))
	var ps uint64
	if ok0 {
		ps = m0.pageSize
	} else {
		// As bbolt does: look for the second meta page at 1 KiB << i.
		for i := 0; i <= 14 && ps == 0; i++ {
			if m1, ok := parseMeta(read(1024 << i)); ok && m1.pageSize == 1024<<i {
				ps = m1.pageSize
			}
		}
	}
	if ps < 1024 || ps > 1<<24 || ps&(ps-1) != 0 {
		return boltMeta{}, fmt.Errorf("not a bbolt database (no valid meta page)")
	}
	c.pageSize = ps
	m1, ok1 := parseMeta(read(int64(ps)))
	// bbolt: the meta with the higher txid if valid, else the other one.
	a, okA, b, okB := m0, ok0, m1, ok1
	if m1.txid > m0.txid {
		a, okA, b, okB = m1, ok1, m0, ok0
	}
	switch {
	case okA && a.pageSize == ps:
		return a, nil
	case okB && b.pageSize == ps:
		return b, nil
	}
	return boltMeta{}, fmt.Errorf("not a bbolt database (no valid meta page)")
}

// page reads page id with its overflow pages, checking that it is within the
// high water mark, not referenced before, and has one of the wanted flags.
func (c *boltChecker) page(id uint64, flags uint16) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("bbolt page %d: out of bounds (high water mark %d)", id, c.hwm)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := c.r.ReadAt(hdr, int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("bbolt page %d: %v", id, err)
	}
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("bbolt page %d: header says page %d", id, got)
	}
	if f := ne.Uint16(hdr[8:]); f&flags == 0 || f&(f-1) != 0 { // exactly one wanted flag
		return nil, fmt.Errorf("bbolt page %d: unexpected page type (flags %#x)", id, f)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if overflow >= c.hwm-id {
		return nil, fmt.Errorf("bbolt page %d: overflow %d runs past high water mark %d", id, overflow, c.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if c.seen[i] {
			return nil, fmt.Errorf("bbolt page %d: referenced more than once", i)
		}
		c.seen[i] = true
	}
	b := make([]byte, (overflow+1)*c.pageSize)
	if _, err := c.r.ReadAt(b, int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("bbolt page %d: %v", id, err)
	}
	return b, nil
}

func (c *boltChecker) freelist(id uint64) error {
	p, err := c.page(id, freelistFlag)
	if err != nil {
		return err
	}
	n, start := uint64(ne.Uint16(p[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF {
		n, start = ne.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > (uint64(len(p))-start)/8 {
		return fmt.Errorf("bbolt freelist page %d: %d ids do not fit in it", id, n)
	}
	for i := uint64(0); i < n; i++ {
		if fid := ne.Uint64(p[start+8*i:]); fid < 2 || fid >= c.hwm {
			return fmt.Errorf("bbolt freelist page %d: free page %d out of bounds", id, fid)
		}
	}
	return nil
}

// elem returns the key and value (nil for branch elements) of element i of
// page p, or an error if they do not lie inside p.
func elem(p []byte, i int, leaf bool) (flags uint32, key, val []byte, child uint64, err error) {
	off := uint64(pageHeaderSize + i*elemSize)
	e := p[off : off+elemSize]
	var pos, ksize, vsize uint64
	if leaf {
		flags, pos, ksize, vsize = ne.Uint32(e), uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
	} else {
		pos, ksize, child = uint64(ne.Uint32(e)), uint64(ne.Uint32(e[4:])), ne.Uint64(e[8:])
	}
	start := off + pos
	if start+ksize+vsize > uint64(len(p)) {
		return 0, nil, nil, 0, fmt.Errorf("element %d points outside its page", i)
	}
	key = p[start : start+ksize]
	if leaf {
		val = p[start+ksize : start+ksize+vsize]
	}
	return flags, key, val, child, nil
}

// orderErr mirrors bbolt's verifyKeyOrder.
func orderErr(i int, key, prev, maxOpen []byte) error {
	if i == 0 && prev != nil && bytes.Compare(prev, key) > 0 {
		return fmt.Errorf("first key %x is below its ancestor's key %x", key, prev)
	}
	if i > 0 && bytes.Compare(prev, key) >= 0 {
		return fmt.Errorf("key %x is not above the previous key %x", key, prev)
	}
	if maxOpen != nil && bytes.Compare(key, maxOpen) >= 0 {
		return fmt.Errorf("key %x is not below the next key in its ancestor %x", key, maxOpen)
	}
	return nil
}

// tree checks the b-tree rooted at page id, whose keys must lie in
// [minKey, maxKey), and returns its largest key (as bbolt's check does).
func (c *boltChecker) tree(id uint64, minKey, maxKey []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("bbolt page %d: tree too deep", id)
	}
	p, err := c.page(id, branchPageFlag|leafPageFlag)
	if err != nil {
		return nil, err
	}
	if ne.Uint16(p[8:])&leafPageFlag != 0 {
		last, err := c.leaf(p, minKey, maxKey, depth)
		if err != nil {
			return nil, fmt.Errorf("bbolt leaf page %d: %w", id, err)
		}
		return last, nil
	}
	n := int(ne.Uint16(p[10:]))
	if n == 0 || pageHeaderSize+n*elemSize > len(p) {
		return nil, fmt.Errorf("bbolt branch page %d: bad element count %d", id, n)
	}
	running := minKey
	var last []byte
	for i := 0; i < n; i++ {
		_, key, _, child, err := elem(p, i, false)
		if err == nil {
			err = orderErr(i, key, running, maxKey)
		}
		if err != nil {
			return nil, fmt.Errorf("bbolt branch page %d: %w", id, err)
		}
		childMax := maxKey
		if i < n-1 {
			if _, childMax, _, _, err = elem(p, i+1, false); err != nil {
				return nil, fmt.Errorf("bbolt branch page %d: %w", id, err)
			}
		}
		if last, err = c.tree(child, key, childMax, depth+1); err != nil {
			return nil, err
		}
		running = last
	}
	return last, nil
}

// leaf checks the leaf page p (a real page or an inline bucket's page) and
// the buckets nested in it, and returns its last key.
func (c *boltChecker) leaf(p []byte, minKey, maxKey []byte, depth int) ([]byte, error) {
	if len(p) < pageHeaderSize {
		return nil, fmt.Errorf("page too short")
	}
	n := int(ne.Uint16(p[10:]))
	if pageHeaderSize+n*elemSize > len(p) {
		return nil, fmt.Errorf("bad element count %d", n)
	}
	running := minKey
	for i := 0; i < n; i++ {
		flags, key, val, _, err := elem(p, i, true)
		if err == nil {
			err = orderErr(i, key, running, maxKey)
		}
		if err != nil {
			return nil, err
		}
		running = key
		if flags&bucketLeafFlag == 0 {
			continue
		}
		if len(val) < 16 {
			return nil, fmt.Errorf("bucket %q: header too short", key)
		}
		if root := ne.Uint64(val); root != 0 {
			_, err = c.tree(root, nil, nil, depth+1)
		} else if inline := val[16:]; len(inline) < pageHeaderSize || ne.Uint16(inline[8:])&leafPageFlag == 0 {
			err = fmt.Errorf("bucket %q: bad inline page", key)
		} else {
			_, err = c.leaf(inline, nil, nil, depth+1)
		}
		if err != nil {
			return nil, fmt.Errorf("bucket %q: %w", key, err)
		}
	}
	if n == 0 {
		return nil, nil
	}
	return running, nil
}
