package raftstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"synod/raftstore/mvcc"
)

// fsm applies committed raft entries to the MVCC store. raft calls Apply,
// Snapshot and Restore from one goroutine; reads of kv happen concurrently.
type fsm struct {
	kv *mvcc.Store

	// attrsMu guards attrs: the name and client URLs each member published.
	attrsMu sync.RWMutex
	attrs   map[uint64]*pb.Member

	// applied is the index of the last command entry applied. Linearizable
	// reads on a follower wait until applied reaches the leader's value.
	applied atomic.Uint64
	// appliedMu guards appliedCh, closed and replaced after every apply so that
	// waiters wake without polling.
	appliedMu sync.Mutex
	appliedCh chan struct{}
}

var _ raft.FSM = (*fsm)(nil)

func newFSM() *fsm {
	return &fsm{kv: mvcc.New(), attrs: map[uint64]*pb.Member{}, appliedCh: make(chan struct{})}
}

// Apply dispatches on the entry's type byte (Nomad's fsm.go shape). An entry
// that does not decode was written by a newer or broken binary; applying
// anything else in its place would fork the replicas, so it panics.
func (f *fsm) Apply(l *raft.Log) any {
	defer f.markApplied(l.Index)
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("raftstore: empty log entry at index %d", l.Index))
	}
	t, data := msgType(l.Data[0]), l.Data[1:]
	switch t {
	case msgPut:
		var r pb.PutRequest
		mustDecode(t, l.Index, r.Unmarshal(data))
		resp, err := f.kv.Put(&r)
		return applyResult{resp: resp, err: err}
	case msgDeleteRange:
		var r pb.DeleteRangeRequest
		mustDecode(t, l.Index, r.Unmarshal(data))
		resp, err := f.kv.DeleteRange(&r)
		return applyResult{resp: resp, err: err}
	case msgTxn:
		var r pb.TxnRequest
		mustDecode(t, l.Index, r.Unmarshal(data))
		resp, err := f.kv.Txn(&r)
		return applyResult{resp: resp, err: err}
	case msgCompact:
		var r pb.CompactionRequest
		mustDecode(t, l.Index, r.Unmarshal(data))
		err := f.kv.Compact(r.Revision)
		return applyResult{resp: &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: f.kv.Rev()}}, err: err}
	case msgLeaseGrant:
		var r pb.LeaseGrantRequest
		mustDecode(t, l.Index, r.Unmarshal(data))
		err := f.kv.LeaseGrant(r.ID, r.TTL)
		return applyResult{resp: &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: f.kv.Rev()}, ID: r.ID, TTL: r.TTL}, err: err}
	case msgLeaseRevoke:
		var r pb.LeaseRevokeRequest
		mustDecode(t, l.Index, r.Unmarshal(data))
		err := f.kv.LeaseRevoke(r.ID)
		return applyResult{resp: &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: f.kv.Rev()}}, err: err}
	case msgMemberAttr:
		var m pb.Member
		mustDecode(t, l.Index, m.Unmarshal(data))
		f.attrsMu.Lock()
		f.attrs[m.ID] = &m
		f.attrsMu.Unlock()
		return applyResult{resp: &pb.MemberUpdateResponse{Header: &pb.ResponseHeader{Revision: f.kv.Rev()}}}
	}
	panic(fmt.Sprintf("raftstore: unknown message type %d at index %d", byte(t), l.Index))
}

func mustDecode(t msgType, index uint64, err error) {
	if err != nil {
		panic(fmt.Sprintf("raftstore: cannot decode %s entry at index %d: %v", t, index, err))
	}
}

func (f *fsm) markApplied(index uint64) {
	f.applied.Store(index)
	f.appliedMu.Lock()
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.appliedMu.Unlock()
}

// appliedChanged returns a channel closed at the next apply.
func (f *fsm) appliedChanged() <-chan struct{} {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.appliedCh
}

// memberAttr returns what member id published about itself, if anything.
func (f *fsm) memberAttr(id uint64) (*pb.Member, bool) {
	f.attrsMu.RLock()
	defer f.attrsMu.RUnlock()
	m, ok := f.attrs[id]
	return m, ok
}

// snapshotMagic starts every FSM snapshot: "SYNS" and a format version.
var snapshotMagic = []byte("SYNS\x01")

// Snapshot captures a copy-on-write view; Persist writes it while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.attrsMu.RLock()
	attrs := make([]*pb.Member, 0, len(f.attrs))
	for _, m := range f.attrs {
		attrs = append(attrs, m)
	}
	f.attrsMu.RUnlock()
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].ID < attrs[j].ID })
	return &fsmSnapshot{applied: f.applied.Load(), attrs: attrs, view: f.kv.View()}, nil
}

// Restore replaces all state with a snapshot written by Persist.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<16)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != string(snapshotMagic) {
		return errors.New("raftstore: restore: not a synod snapshot (bad magic)")
	}
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("raftstore: restore: header: %w", err)
	}
	applied := binary.BigEndian.Uint64(hdr[:8])
	n := binary.BigEndian.Uint32(hdr[8:])
	attrs := make(map[uint64]*pb.Member, n)
	for i := uint32(0); i < n; i++ {
		var lenb [4]byte
		if _, err := io.ReadFull(br, lenb[:]); err != nil {
			return fmt.Errorf("raftstore: restore: member %d: %w", i, err)
		}
		size := binary.BigEndian.Uint32(lenb[:])
		if size > 1<<20 {
			return fmt.Errorf("raftstore: restore: member record of %d bytes is not plausible", size)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("raftstore: restore: member %d: %w", i, err)
		}
		m := &pb.Member{}
		if err := m.Unmarshal(buf); err != nil {
			return fmt.Errorf("raftstore: restore: member %d: %w", i, err)
		}
		attrs[m.ID] = m
	}
	if err := f.kv.Restore(br); err != nil {
		return fmt.Errorf("raftstore: restore: %w", err)
	}
	f.attrsMu.Lock()
	f.attrs = attrs
	f.attrsMu.Unlock()
	f.markApplied(applied)
	return nil
}

type fsmSnapshot struct {
	applied uint64
	attrs   []*pb.Member
	view    mvcc.View
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("raftstore: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	bw.Write(snapshotMagic)
	var hdr [12]byte
	binary.BigEndian.PutUint64(hdr[:8], s.applied)
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(s.attrs)))
	bw.Write(hdr[:])
	for _, m := range s.attrs {
		b, err := m.Marshal()
		if err != nil {
			return err
		}
		var lenb [4]byte
		binary.BigEndian.PutUint32(lenb[:], uint32(len(b)))
		bw.Write(lenb[:])
		bw.Write(b)
	}
	if _, err := s.view.WriteTo(bw); err != nil {
		return err
	}
	return bw.Flush()
}

func (s *fsmSnapshot) Release() {}
