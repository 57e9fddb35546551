package raftstore

import (
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
)

// grpcOverheadBytes is etcd's allowance for gRPC framing on top of
// --max-request-bytes.
const grpcOverheadBytes = 512 * 1024

// serveClients starts the etcd v3 API on every client URL, with etcd's server
// options (embed/config.go).
func (s *Server) serveClients() error {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	}
	if s.cfg.ClientTLS != nil {
		tc := s.cfg.ClientTLS.Clone()
		// grpc-go rejects TLS without ALPN h2 (grpc-go #7535).
		if len(tc.NextProtos) == 0 {
			tc.NextProtos = []string{"h2"}
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	srv := grpc.NewServer(opts...)
	pb.RegisterKVServer(srv, &kvService{s})
	pb.RegisterWatchServer(srv, &watchService{s})
	pb.RegisterLeaseServer(srv, &leaseService{s})
	pb.RegisterClusterServer(srv, &clusterService{s})
	pb.RegisterMaintenanceServer(srv, &maintenanceService{s})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	s.clientSrv = srv
	for _, u := range s.cfg.ListenClientURLs {
		host, err := parseURLHost(u)
		if err != nil {
			return err
		}
		network := "tcp"
		if strings.HasPrefix(u, "unix://") {
			network = "unix"
		}
		ln, err := net.Listen(network, host)
		if err != nil {
			return fmt.Errorf("listen on client URL %s: %w", u, err)
		}
		s.clientLns = append(s.clientLns, ln)
		go srv.Serve(ln)
	}
	return nil
}

// requireLeader honours etcd's "hasleader" metadata: a client that asks for
// it gets ErrNoLeader instead of a stale or blocked answer.
func (s *Server) requireLeader(ctx context.Context) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil
	}
	if vs := md.Get(rpctypes.MetadataRequireLeaderKey); len(vs) > 0 && vs[0] == rpctypes.MetadataHasLeader {
		if _, id := s.raft.LeaderWithID(); id == "" {
			return rpctypes.ErrGRPCNoLeader
		}
	}
	return nil
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.requireLeader(ctx); err != nil {
		return nil, err
	}
	if m, ok := req.(interface{ Size() int }); ok && m.Size() > s.cfg.MaxRequestBytes {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	return h(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.requireLeader(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// isLearner reports whether this member is a raft non-voter.
func (s *Server) isLearner() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == serverID(s.id) {
			return srv.Suffrage != raft.Voter
		}
	}
	return false
}
