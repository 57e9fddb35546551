package raftstore

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"synod/raftstore/etcdsnap"
	"synod/raftstore/mvcc"
)

// writeEtcdSnapshot writes the current state as an etcd-layout snapshot.
func (s *Server) writeEtcdSnapshot(w io.Writer) (int64, error) {
	view := s.fsm.kv.View()
	hdr := etcdsnap.Header{Rev: view.Rev(), CompactRev: view.CompactRev(), ConsistentIndex: s.raft.AppliedIndex(), Term: s.raft.CurrentTerm()}
	var leases []etcdsnap.Lease
	for _, l := range view.Leases() {
		leases = append(leases, etcdsnap.Lease{ID: l.ID, TTL: l.TTL})
	}
	records := func(fn func(etcdsnap.Record) error) error {
		return view.Records(func(r mvcc.Record) error {
			return fn(etcdsnap.Record{KV: r.KV, Sub: r.Sub, Tombstone: r.Tombstone})
		})
	}
	return etcdsnap.WriteStream(w, s.cfg.DataDir, hdr, records, leases)
}

// RestoreDataDir rebuilds a member's data dir from an etcd-format snapshot
// file, like `etcdutl snapshot restore`: every member of the new cluster
// restores the same file with the same initial cluster, and starts from an
// identical raft snapshot at index 1. dataDir must not hold raft state.
// token is accepted for symmetry with etcdutl's flags; member IDs derive from
// peer URLs alone.
func RestoreDataDir(snapshotFile, dataDir, name, peerURL, token string, initialCluster []Member, skipHashCheck bool) error {
	snap, err := etcdsnap.Read(snapshotFile, skipHashCheck)
	if err != nil {
		return fmt.Errorf("read snapshot %s: %w", snapshotFile, err)
	}
	found := false
	var servers []raft.Server
	for _, m := range initialCluster {
		host, err := parseURLHost(m.PeerURL)
		if err != nil {
			return err
		}
		if m.Name == name {
			found = true
			if m.PeerURL != peerURL {
				return fmt.Errorf("--initial-cluster gives %s=%s but --initial-advertise-peer-urls is %s", m.Name, m.PeerURL, peerURL)
			}
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: serverID(memberID(m.PeerURL)), Address: raft.ServerAddress(host)})
	}
	if !found {
		return fmt.Errorf("--initial-cluster does not include --name %q", name)
	}
	if entries, err := os.ReadDir(dataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("data dir %s is not empty; restore needs a fresh one", dataDir)
	}
	f := newFSM()
	recs := make([]mvcc.Record, len(snap.Records))
	for i, r := range snap.Records {
		recs[i] = mvcc.Record{KV: r.KV, Sub: r.Sub, Tombstone: r.Tombstone}
	}
	leases := make([]mvcc.Lease, len(snap.Leases))
	for i, l := range snap.Leases {
		leases[i] = mvcc.Lease{ID: l.ID, TTL: l.TTL}
	}
	if err := f.kv.Load(snap.Rev, snap.CompactRev, recs, leases); err != nil {
		return fmt.Errorf("load snapshot %s: %w", snapshotFile, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, 2, hclog.NewNullLogger())
	if err != nil {
		return err
	}
	const index, term = 1, 1
	cfg := raft.Configuration{Servers: servers}
	// Create encodes the legacy peer list through a transport; any will do.
	_, trans := raft.NewInmemTransport("")
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, cfg, index, trans)
	if err != nil {
		return fmt.Errorf("create raft snapshot: %w", err)
	}
	fs, _ := f.Snapshot()
	if err := fs.Persist(sink); err != nil {
		return err
	}
	// raft's stable term must not be behind the snapshot's.
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, "raft.db")})
	if err != nil {
		return err
	}
	defer logs.Close()
	if err := logs.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return err
	}
	return nil
}
