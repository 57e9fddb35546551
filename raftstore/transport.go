package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The peer port carries two protocols: the raft transport and a gRPC service
// for forwarding (peer.go). Every connection opens with peerMagic and one
// byte naming the protocol, so garbage on the port is rejected before any
// decoder sees it (rqlite's tcp/mux does the same with a single byte).
var peerMagic = []byte("SYNd")

const (
	protoRaft byte = 'R'
	protoGRPC byte = 'G'
)

// peerHeaderTimeout bounds how long a new connection may take to say which
// protocol it speaks (and finish its TLS handshake).
const peerHeaderTimeout = 5 * time.Second

// peerMux accepts connections on the peer port and hands each to the raft or
// gRPC listener by its header.
type peerMux struct {
	ln        net.Listener
	serverTLS *tls.Config
	clientTLS *tls.Config
	log       *slog.Logger

	raft *chanListener
	grpc *chanListener

	wg sync.WaitGroup
}

func newPeerMux(ln net.Listener, serverTLS, clientTLS *tls.Config, log *slog.Logger) *peerMux {
	return &peerMux{
		ln: ln, serverTLS: serverTLS, clientTLS: clientTLS, log: log,
		raft: newChanListener(ln.Addr()),
		grpc: newChanListener(ln.Addr()),
	}
}

// serve accepts until the listener is closed.
func (m *peerMux) serve() {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("peer accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.handle(conn)
		}()
	}
}

func (m *peerMux) handle(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(peerHeaderTimeout))
	if m.serverTLS != nil {
		tc := tls.Server(conn, m.serverTLS)
		if err := tc.Handshake(); err != nil {
			m.log.Warn("peer TLS handshake failed", "remote", conn.RemoteAddr(), "err", err)
			conn.Close()
			return
		}
		conn = tc
	}
	hdr := make([]byte, len(peerMagic)+1)
	if _, err := io.ReadFull(conn, hdr); err != nil || string(hdr[:len(peerMagic)]) != string(peerMagic) {
		m.log.Warn("rejected connection on peer port: not a synod peer", "remote", conn.RemoteAddr())
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	var target *chanListener
	switch hdr[len(peerMagic)] {
	case protoRaft:
		target = m.raft
	case protoGRPC:
		target = m.grpc
	default:
		m.log.Warn("rejected connection on peer port: unknown protocol", "remote", conn.RemoteAddr(), "proto", hdr[len(peerMagic)])
		conn.Close()
		return
	}
	if !target.deliver(conn) {
		conn.Close()
	}
}

// dial opens a peer connection to addr speaking proto.
func (m *peerMux) dial(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if m.clientTLS != nil {
		cfg := m.clientTLS
		if cfg.ServerName == "" {
			// tls.Client, unlike tls.Dial, does not fill in the name to verify.
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("peer TLS handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	hdr := append(append([]byte{}, peerMagic...), proto)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write(hdr); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// close stops accepting and closes both virtual listeners.
func (m *peerMux) close() {
	m.ln.Close()
	m.raft.Close()
	m.grpc.Close()
	m.wg.Wait()
}

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct {
	mux       *peerMux
	advertise net.Addr
}

var _ raft.StreamLayer = (*raftLayer)(nil)

func (l *raftLayer) Accept() (net.Conn, error) { return l.mux.raft.Accept() }
func (l *raftLayer) Close() error              { return l.mux.raft.Close() }
func (l *raftLayer) Addr() net.Addr            { return l.advertise }
func (l *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.mux.dial(ctx, string(addr), protoRaft)
}

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// tcpAddr is a net.Addr for an advertised host:port that may not be local.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }
