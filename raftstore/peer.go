package raftstore

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The peer service is how members talk to the leader outside raft itself:
// forwarded proposals, read-index requests and lease renewals. It is served
// on the peer port (behind the mux, so with peer mTLS when configured). The
// etcd Cluster and Lease services are registered there too, so membership
// changes and lease TTL queries can be forwarded to the leader as they are.
//
// The messages are protobuf well-known wrappers around bytes: the payloads are
// already-encoded etcd messages, and a hand-written ServiceDesc saves a
// protoc step for four methods.
const peerService = "synod.raftstore.Peer"

// errPeerNotLeader means the member asked is not the leader and did nothing:
// the request may be sent to the real leader.
var errPeerNotLeader = errors.New("raftstore: peer is not the leader")

// errPeerUnreachable means the call could not even be sent (the peer could not
// be dialled), so the request may be sent again, to the same or a new leader.
var errPeerUnreachable = errors.New("raftstore: peer is unreachable")

const notLeaderMsg = "synod: not the leader"

// forwardedKey marks contexts of calls that arrived on the peer port; such
// calls are never forwarded again.
type forwardedKey struct{}

func isForwarded(ctx context.Context) bool { return ctx.Value(forwardedKey{}) != nil }

func (s *Server) newPeerGRPCServer() *grpc.Server {
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes+grpcOverheadBytes),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(context.WithValue(ctx, forwardedKey{}, true), req)
		}),
	)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: peerService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			peerMethod("Propose", s.peerPropose),
			peerMethod("ReadIndex", s.peerReadIndex),
			peerMethod("LeaseRenew", s.peerLeaseRenew),
		},
	}, s)
	pb.RegisterClusterServer(srv, &clusterService{s})
	pb.RegisterLeaseServer(srv, &leaseService{s})
	return srv
}

func peerMethod(name string, f func(context.Context, []byte) ([]byte, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.BytesValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				out, err := f(ctx, req.(*wrapperspb.BytesValue).Value)
				if err != nil {
					return nil, err
				}
				return &wrapperspb.BytesValue{Value: out}, nil
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/" + peerService + "/" + name}, h)
		},
	}
}

func notLeaderStatus() error { return status.Error(codes.FailedPrecondition, notLeaderMsg) }

// peerPropose applies a forwarded command if this member leads.
func (s *Server) peerPropose(_ context.Context, cmd []byte) ([]byte, error) {
	if err := validateCommand(cmd); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if s.raft.State() != raft.Leader {
		return nil, notLeaderStatus()
	}
	resp, err := s.applyLocal(cmd)
	if errors.Is(err, raft.ErrNotLeader) {
		return nil, notLeaderStatus()
	}
	if err != nil {
		return nil, err
	}
	buf := make([]byte, resp.Size())
	if _, err := resp.MarshalToSizedBuffer(buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (s *Server) peerReadIndex(_ context.Context, _ []byte) ([]byte, error) {
	idx, err := s.readIndex()
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return nil, notLeaderStatus()
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	return binary.BigEndian.AppendUint64(nil, idx), nil
}

func (s *Server) peerLeaseRenew(_ context.Context, in []byte) ([]byte, error) {
	if len(in) != 8 {
		return nil, status.Error(codes.InvalidArgument, "bad lease id")
	}
	if s.raft.State() != raft.Leader {
		return nil, notLeaderStatus()
	}
	ttl, err := s.lessor.renew(int64(binary.BigEndian.Uint64(in)))
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint64(nil, uint64(ttl)), nil
}

// peerClients keeps one gRPC connection per peer address.
type peerClients struct {
	mux   *peerMux
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerClients(mux *peerMux) *peerClients {
	return &peerClients{mux: mux, conns: map[string]*grpc.ClientConn{}}
}

func (p *peerClients) conn(addr string) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, errPeerNotLeader
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // TLS, if any, is done by the dialer below
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return p.mux.dial(ctx, a, protoGRPC)
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerClients) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		c.Close()
		delete(p.conns, a)
	}
}

// call invokes a peer method. A "not leader" answer becomes errPeerNotLeader;
// any other failure is returned as a gRPC status (outcome unknown).
func (p *peerClients) call(ctx context.Context, addr, method string, in []byte) ([]byte, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	out := &wrapperspb.BytesValue{}
	err = c.Invoke(ctx, "/"+peerService+"/"+method, &wrapperspb.BytesValue{Value: in}, out)
	if err != nil {
		if st, ok := status.FromError(err); ok {
			if st.Code() == codes.FailedPrecondition && st.Message() == notLeaderMsg {
				return nil, errPeerNotLeader
			}
			// grpc fails a call that got no connection at all (the dial
			// failed, or the connection broke before the HTTP/2 preface)
			// with "connection error: ..." before sending anything, the
			// condition its own transparent retry relies on: the leader
			// never saw the request, so it may be re-sent. A connection
			// lost mid-call reads differently ("transport is closing",
			// "error reading from server") and is never retried.
			if st.Code() == codes.Unavailable && (strings.HasPrefix(st.Message(), "connection error:") || strings.Contains(st.Message(), "while dialing")) {
				return nil, errPeerUnreachable
			}
		}
		return nil, err
	}
	return out.Value, nil
}

func (p *peerClients) propose(ctx context.Context, addr string, cmd []byte) ([]byte, error) {
	return p.call(ctx, addr, "Propose", cmd)
}

func (p *peerClients) readIndex(ctx context.Context, addr string) (uint64, error) {
	out, err := p.call(ctx, addr, "ReadIndex", nil)
	if err != nil {
		return 0, err
	}
	if len(out) != 8 {
		return 0, status.Error(codes.Internal, "bad read index reply")
	}
	return binary.BigEndian.Uint64(out), nil
}

func (p *peerClients) leaseRenew(ctx context.Context, addr string, id int64) (int64, error) {
	out, err := p.call(ctx, addr, "LeaseRenew", binary.BigEndian.AppendUint64(nil, uint64(id)))
	if err != nil {
		return 0, err
	}
	if len(out) != 8 {
		return 0, status.Error(codes.Internal, "bad lease renew reply")
	}
	return int64(binary.BigEndian.Uint64(out)), nil
}

// leaderConn returns a connection to the current leader for forwarding etcd
// service calls, or errPeerNotLeader when this member is the leader or none
// is known.
func (s *Server) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	leader, err := s.waitLeader(ctx)
	if err != nil {
		return nil, err
	}
	if leader == s.id {
		return nil, errPeerNotLeader
	}
	return s.peers.conn(s.leaderAddr(leader))
}
