package raftstore

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// clusterService is etcd's Cluster service over raft's configuration.
// Membership changes run on the leader; followers forward them.
type clusterService struct{ s *Server }

var _ pb.ClusterServer = (*clusterService)(nil)

// configChangeTimeout bounds one raft configuration change.
const configChangeTimeout = 10 * time.Second

// members lists raft's configuration joined with what members published.
func (s *Server) members() ([]*pb.Member, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, toGRPCError(err)
	}
	var out []*pb.Member
	for _, srv := range f.Configuration().Servers {
		id := parseServerID(srv.ID)
		m := &pb.Member{ID: id, PeerURLs: []string{"http://" + string(srv.Address)}, IsLearner: srv.Suffrage != raft.Voter}
		if a, ok := s.fsm.memberAttr(id); ok {
			m.Name = a.Name
			m.ClientURLs = a.ClientURLs
			if len(a.PeerURLs) > 0 {
				m.PeerURLs = a.PeerURLs
			}
		} else if s.cfg.PeerClientTLS != nil {
			m.PeerURLs = []string{"https://" + string(srv.Address)}
		}
		out = append(out, m)
	}
	return out, nil
}

func (c *clusterService) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := c.s.linearizableBarrier(ctx); err != nil {
			return nil, err
		}
	}
	ms, err := c.s.members()
	if err != nil {
		return nil, err
	}
	return &pb.MemberListResponse{Header: c.s.header(0), Members: ms}, nil
}

// forward sends a membership call to the leader when this member is not it.
// It reports handled=false when the caller should run the call locally.
func (c *clusterService) forward(ctx context.Context, call func(pb.ClusterClient) error) (handled bool, err error) {
	if c.s.raft.State() == raft.Leader {
		return false, nil
	}
	if isForwarded(ctx) {
		return true, notLeaderStatus()
	}
	conn, err := c.s.leaderConn(ctx)
	if errors.Is(err, errPeerNotLeader) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	return true, call(pb.NewClusterClient(conn))
}

func (c *clusterService) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (resp *pb.MemberAddResponse, err error) {
	if len(r.PeerURLs) != 1 {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	host, perr := parseURLHost(r.PeerURLs[0])
	if u, _ := url.Parse(r.PeerURLs[0]); perr != nil || u.Path != "" && u.Path != "/" {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	if handled, err := c.forward(ctx, func(cc pb.ClusterClient) (e error) { resp, e = cc.MemberAdd(ctx, r); return }); handled {
		return resp, err
	}
	ms, err := c.s.members()
	if err != nil {
		return nil, err
	}
	id := memberID(r.PeerURLs[0])
	for _, m := range ms {
		if m.ID == id {
			return nil, rpctypes.ErrGRPCMemberExist
		}
		for _, u := range m.PeerURLs {
			if u == r.PeerURLs[0] || trimScheme(u) == host {
				return nil, rpctypes.ErrGRPCPeerURLExist
			}
		}
	}
	var f raft.IndexFuture
	if r.IsLearner {
		f = c.s.raft.AddNonvoter(serverID(id), raft.ServerAddress(host), 0, configChangeTimeout)
	} else {
		f = c.s.raft.AddVoter(serverID(id), raft.ServerAddress(host), 0, configChangeTimeout)
	}
	if err := f.Error(); err != nil {
		return nil, toGRPCError(err)
	}
	c.s.log.Info("member added", "id", serverID(id), "peer_url", r.PeerURLs[0], "learner", r.IsLearner)
	ms, err = c.s.members()
	if err != nil {
		return nil, err
	}
	return &pb.MemberAddResponse{Header: c.s.header(0), Member: &pb.Member{ID: id, PeerURLs: r.PeerURLs, IsLearner: r.IsLearner}, Members: ms}, nil
}

func trimScheme(u string) string {
	h, err := parseURLHost(u)
	if err != nil {
		return u
	}
	return h
}

func (c *clusterService) findMember(id uint64) (*pb.Member, []*pb.Member, error) {
	ms, err := c.s.members()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		if m.ID == id {
			return m, ms, nil
		}
	}
	return nil, ms, rpctypes.ErrGRPCMemberNotFound
}

func (c *clusterService) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (resp *pb.MemberRemoveResponse, err error) {
	if handled, err := c.forward(ctx, func(cc pb.ClusterClient) (e error) { resp, e = cc.MemberRemove(ctx, r); return }); handled {
		return resp, err
	}
	if _, _, err := c.findMember(r.ID); err != nil {
		return nil, err
	}
	if err := c.s.raft.RemoveServer(serverID(r.ID), 0, configChangeTimeout).Error(); err != nil {
		return nil, toGRPCError(err)
	}
	c.s.log.Info("member removed", "id", serverID(r.ID))
	ms, err := c.s.members()
	if err != nil {
		return nil, err
	}
	return &pb.MemberRemoveResponse{Header: c.s.header(0), Members: ms}, nil
}

func (c *clusterService) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (resp *pb.MemberUpdateResponse, err error) {
	if len(r.PeerURLs) != 1 {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	host, perr := parseURLHost(r.PeerURLs[0])
	if perr != nil {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	if handled, err := c.forward(ctx, func(cc pb.ClusterClient) (e error) { resp, e = cc.MemberUpdate(ctx, r); return }); handled {
		return resp, err
	}
	m, _, err := c.findMember(r.ID)
	if err != nil {
		return nil, err
	}
	var f raft.IndexFuture
	if m.IsLearner {
		f = c.s.raft.AddNonvoter(serverID(r.ID), raft.ServerAddress(host), 0, configChangeTimeout)
	} else {
		f = c.s.raft.AddVoter(serverID(r.ID), raft.ServerAddress(host), 0, configChangeTimeout)
	}
	if err := f.Error(); err != nil {
		return nil, toGRPCError(err)
	}
	ms, err := c.s.members()
	if err != nil {
		return nil, err
	}
	return &pb.MemberUpdateResponse{Header: c.s.header(0), Members: ms}, nil
}

func (c *clusterService) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (resp *pb.MemberPromoteResponse, err error) {
	if handled, err := c.forward(ctx, func(cc pb.ClusterClient) (e error) { resp, e = cc.MemberPromote(ctx, r); return }); handled {
		return resp, err
	}
	m, _, err := c.findMember(r.ID)
	if err != nil {
		return nil, err
	}
	if !m.IsLearner {
		return nil, rpctypes.ErrGRPCMemberNotLearner
	}
	host, _ := parseURLHost(m.PeerURLs[0])
	if err := c.s.raft.AddVoter(serverID(r.ID), raft.ServerAddress(host), 0, configChangeTimeout).Error(); err != nil {
		return nil, toGRPCError(err)
	}
	ms, err := c.s.members()
	if err != nil {
		return nil, err
	}
	return &pb.MemberPromoteResponse{Header: c.s.header(0), Members: ms}, nil
}
