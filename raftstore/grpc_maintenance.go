package raftstore

import (
	"context"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"synod/raftstore/mvcc"
)

// etcdVersion is the etcd version synod reports. kube-apiserver enables
// RequestWatchProgress only for etcd >= 3.5.13, and synod implements it.
const etcdVersion = "3.5.17"

// maintenanceService is etcd's Maintenance service.
type maintenanceService struct{ s *Server }

var _ pb.MaintenanceServer = (*maintenanceService)(nil)

func (m *maintenanceService) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	s := m.s
	var leader uint64
	if _, id := s.raft.LeaderWithID(); id != "" {
		leader = parseServerID(id)
	}
	resp := &pb.StatusResponse{
		Header:           s.header(0),
		Version:          etcdVersion,
		DbSize:           s.dbSize(),
		Leader:           leader,
		RaftIndex:        s.raft.LastIndex(),
		RaftTerm:         s.raft.CurrentTerm(),
		RaftAppliedIndex: s.raft.AppliedIndex(),
		IsLearner:        s.isLearner(),
		StorageVersion:   "3.5.0",
	}
	resp.DbSizeInUse = resp.DbSize
	if leader == 0 {
		resp.Errors = append(resp.Errors, rpctypes.ErrGRPCNoLeader.Error())
	}
	return resp, nil
}

// dbSize is the on-disk size of the raft log plus the newest snapshot.
func (s *Server) dbSize() int64 {
	var n int64
	if fi, err := os.Stat(filepath.Join(s.cfg.DataDir, "raft.db")); err == nil {
		n += fi.Size()
	}
	if metas, err := s.snaps.List(); err == nil && len(metas) > 0 {
		n += metas[0].Size
	}
	return n
}

func (m *maintenanceService) Alarm(context.Context, *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	// synod raises no alarms (no space quota, no corruption check yet); etcdctl
	// treats an Alarm error as an unhealthy endpoint, so answer an empty list.
	return &pb.AlarmResponse{Header: m.s.header(0)}, nil
}

// Defragment has nothing to defragment in an in-memory store; it takes a raft
// snapshot instead, which truncates the log (the nearest equivalent: it
// reclaims space). This is also the on-demand snapshot trigger.
func (m *maintenanceService) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := m.s.raft.Snapshot().Error(); err != nil && err != raft.ErrNothingNewToSnapshot {
		return nil, status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	return &pb.DefragmentResponse{Header: m.s.header(0)}, nil
}

// Hash and HashKV hash the key-value history: equal hashes at a revision mean
// equal data on two members (a consistency check for operators and chaos).
func (m *maintenanceService) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	h, _, err := hashView(m.s.fsm.kv.View(), 0)
	if err != nil {
		return nil, err
	}
	return &pb.HashResponse{Header: m.s.header(0), Hash: h}, nil
}

func (m *maintenanceService) HashKV(_ context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	v := m.s.fsm.kv.View()
	if r.Revision > v.Rev() {
		return nil, rpctypes.ErrGRPCFutureRev
	}
	if r.Revision > 0 && r.Revision < v.CompactRev() {
		return nil, rpctypes.ErrGRPCCompacted
	}
	h, rev, err := hashView(v, r.Revision)
	if err != nil {
		return nil, err
	}
	return &pb.HashKVResponse{Header: m.s.header(rev), Hash: h, CompactRevision: v.CompactRev(), HashRevision: rev}, nil
}

// hashView is a crc32 (Castagnoli, as etcd) over every record up to rev
// (0 = all).
func hashView(v mvcc.View, rev int64) (uint32, int64, error) {
	if rev <= 0 {
		rev = v.Rev()
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	err := v.Records(func(r mvcc.Record) error {
		if r.KV.ModRevision > rev {
			return nil
		}
		b, err := r.KV.Marshal()
		if err != nil {
			return err
		}
		h.Write(b)
		if r.Tombstone {
			h.Write([]byte{'t'})
		}
		return nil
	})
	if err != nil {
		return 0, 0, status.Errorf(codes.Internal, "hash: %v", err)
	}
	return h.Sum32(), rev, nil
}

// Snapshot streams the state as an etcd-layout bbolt file followed by its
// sha256, so `etcdctl snapshot save/status/restore` accept it.
//
// Unlike etcd, which streams whatever its local backend holds, the member
// first catches up with the leader (a read-index barrier), so a snapshot taken
// after a write was acknowledged contains it, whichever member serves it.
func (m *maintenanceService) Snapshot(_ *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	if err := m.s.linearizableBarrier(stream.Context()); err != nil {
		return err
	}
	f, err := os.CreateTemp(m.s.cfg.DataDir, "snapshot-stream-*.db")
	if err != nil {
		return status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := m.s.writeEtcdSnapshot(f); err != nil {
		return status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	buf := make([]byte, 32*1024)
	sent := int64(0)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			sent += int64(n)
			if err := stream.Send(&pb.SnapshotResponse{Header: m.s.header(0), RemainingBytes: uint64(size - sent), Blob: append([]byte(nil), buf[:n]...), Version: etcdVersion}); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "snapshot: %v", err)
		}
	}
}

func (m *maintenanceService) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if m.s.raft.State() != raft.Leader {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	ms, err := m.s.members()
	if err != nil {
		return nil, err
	}
	for _, mem := range ms {
		if mem.ID == r.TargetID && !mem.IsLearner {
			host, _ := parseURLHost(mem.PeerURLs[0])
			if err := m.s.raft.LeadershipTransferToServer(serverID(r.TargetID), raft.ServerAddress(host)).Error(); err != nil {
				return nil, toGRPCError(err)
			}
			return &pb.MoveLeaderResponse{Header: m.s.header(0)}, nil
		}
	}
	return nil, rpctypes.ErrGRPCBadLeaderTransferee
}

func (m *maintenanceService) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, status.Error(codes.Unimplemented, "synod: downgrade is not supported")
}
