package raftstore

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
)

// Server is one running master store: raft, the FSM, the peer port and the
// etcd gRPC API on the client URLs.
type Server struct {
	cfg       Config
	log       *slog.Logger
	id        uint64 // this member's etcd-style ID, derived from its peer URL
	clusterID uint64

	netCloseOnce sync.Once // closeNetwork

	fsm   *fsm
	raft  *raft.Raft
	logs  *raftboltdb.BoltStore
	snaps *raft.FileSnapshotStore
	trans *raft.NetworkTransport

	mux     *peerMux
	peers   *peerClients
	peerSrv *grpc.Server

	clientLns []net.Listener
	clientSrv *grpc.Server

	lessor   *lessor
	metrics  *metrics
	httpSrvs []*http.Server

	// readyTerm is the raft term in which this member, as leader, has applied
	// a barrier: from then on its FSM holds every entry committed by earlier
	// leaders, so it may serve linearizable reads. barrierMu lets only one
	// goroutine run that barrier at a time.
	readyTerm atomic.Uint64
	barrierMu sync.Mutex

	removedCh chan struct{} // closed when this member is removed from the cluster
	stopCh    chan struct{} // closed by Close: stops background loops
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// memberID derives an etcd-style member ID from a peer URL alone, so that
// every member and every tool computes the same ID for a peer without
// knowing anything else about the cluster (etcd also mixes in the cluster
// token, which made a joining member started with another token a stranger
// to its own cluster).
func memberID(peerURL string) uint64 {
	sum := sha256.Sum256([]byte(peerURL))
	return binary.BigEndian.Uint64(sum[:8])
}

// clusterIDFor names the cluster in response headers, from its token.
func clusterIDFor(token string) uint64 {
	sum := sha256.Sum256([]byte("cluster\x00" + token))
	return binary.BigEndian.Uint64(sum[:8])
}

func serverID(id uint64) raft.ServerID { return raft.ServerID(fmt.Sprintf("%016x", id)) }

func parseServerID(s raft.ServerID) uint64 {
	var id uint64
	fmt.Sscanf(string(s), "%x", &id)
	return id
}

// Open starts the member and returns once it serves; it does not wait for a
// leader. Close stops it.
func Open(cfg Config, logger *slog.Logger) (_ *Server, retErr error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		cfg:       cfg,
		log:       logger.With("member", cfg.Name),
		id:        memberID(cfg.AdvertisePeerURL),
		clusterID: clusterIDFor(cfg.ClusterToken),
		fsm:       newFSM(),
		stopCh:    make(chan struct{}),
		removedCh: make(chan struct{}),
	}
	if cfg.UnsafeChaosBug != "" { // test-only: proves the chaos checks can fail
		s.log.Warn("UNSAFE: deliberate consistency bug enabled (test-only)", "unsafe-chaos-bug", cfg.UnsafeChaosBug)
	}
	defer func() {
		if retErr != nil {
			s.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := s.openPeerPort(); err != nil {
		return nil, err
	}
	if err := s.openRaft(); err != nil {
		return nil, err
	}
	s.peers = newPeerClients(s.mux)
	s.lessor = newLessor(s)
	s.metrics = newMetrics(s)
	if err := s.serveMetrics(); err != nil {
		return nil, err
	}
	s.peerSrv = s.newPeerGRPCServer()
	go s.peerSrv.Serve(s.mux.grpc)
	if err := s.serveClients(); err != nil {
		return nil, err
	}
	s.goLoop(s.leaderLoop)
	s.goLoop(s.lessor.run)
	s.goLoop(s.publishLoop)
	s.goLoop(s.watchRemoval)
	if p, _ := parseCompaction(cfg.AutoCompactionMode, cfg.AutoCompactionRetention); p.period > 0 || p.revisions > 0 {
		s.goLoop(func() { s.compactLoop(p) })
	}
	s.log.Info("member started", "id", fmt.Sprintf("%016x", s.id), "peer", cfg.AdvertisePeerURL, "clients", strings.Join(cfg.ListenClientURLs, ","))
	return s, nil
}

func (s *Server) goLoop(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

func (s *Server) openPeerPort() error {
	host, err := parseURLHost(s.cfg.ListenPeerURLs[0])
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", host)
	if err != nil {
		return fmt.Errorf("listen on peer URL %s: %w", s.cfg.ListenPeerURLs[0], err)
	}
	s.mux = newPeerMux(ln, s.cfg.PeerServerTLS, s.cfg.PeerClientTLS, s.log)
	go s.mux.serve()
	return nil
}

func (s *Server) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = serverID(s.id)
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = s.cfg.CommitTimeout
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.TrailingLogs = s.cfg.TrailingLogs
	// Batch applies: many concurrent writers share one fsync.
	rc.MaxAppendEntries = 256
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{s.log}})
	return rc
}

func (s *Server) openRaft() error {
	rc := s.raftConfig()
	logs, err := raftboltdb.New(raftboltdb.Options{
		Path:                    filepath.Join(s.cfg.DataDir, "raft.db"),
		BoltOptions:             &bbolt.Options{NoFreelistSync: true, Timeout: time.Second},
		MsgpackUseNewTimeFormat: true,
	})
	if err != nil {
		return fmt.Errorf("open raft log %s: %w (is another synod using this data dir?)", filepath.Join(s.cfg.DataDir, "raft.db"), err)
	}
	s.logs = logs
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.cfg.DataDir, 2, rc.Logger)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	s.snaps = snaps
	advertise, _ := parseURLHost(s.cfg.AdvertisePeerURL)
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &raftLayer{mux: s.mux, advertise: tcpAddr(advertise)},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  rc.Logger,
	})
	cached, err := raft.NewLogCache(512, logs)
	if err != nil {
		return err
	}
	hasState, err := raft.HasExistingState(cached, logs, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	r, err := raft.NewRaft(rc, s.fsm, cached, logs, snaps, s.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	switch {
	case hasState:
		s.log.Info("restarting from existing raft state", "last_index", r.LastIndex())
	case s.cfg.InitialClusterState == "new":
		var servers []raft.Server
		for _, m := range s.cfg.InitialCluster {
			addr, err := parseURLHost(m.PeerURL)
			if err != nil {
				return err
			}
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: serverID(memberID(m.PeerURL)), Address: raft.ServerAddress(addr)})
		}
		// Every member bootstraps with the same configuration; raft copes
		// with the identical bootstraps racing.
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
	default:
		s.log.Info("joining an existing cluster: waiting for the leader to contact this member (run `synod member add` first)")
	}
	return nil
}

// Close hands over leadership if this member leads, then stops everything.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.close() })
	return err
}

func (s *Server) close() error {
	if s.raft != nil && s.raft.State() == raft.Leader && s.voters() > 1 {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.log.Warn("leadership transfer on shutdown failed", "err", err)
		} else {
			s.log.Info("handed leadership over before shutdown")
		}
	}
	close(s.stopCh)
	for _, h := range s.httpSrvs {
		h.Close()
	}
	if s.clientSrv != nil {
		stopGRPC(s.clientSrv, 2*time.Second)
	}
	if s.peerSrv != nil {
		stopGRPC(s.peerSrv, time.Second)
	}
	s.wg.Wait()
	var errs []error
	if s.raft != nil {
		shut := make(chan error, 1)
		go func() { shut <- s.raft.Shutdown().Error() }()
		select {
		case err := <-shut:
			if err != nil {
				errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
			}
		case <-time.After(raftShutdownWait):
			// hashicorp/raft waits for its replication goroutines, and one
			// blocked in a pipelined AppendEntries on a peer that stopped
			// answering never returns on its own (seen under heavy load in
			// tests). Closing the network unblocks it; then wait once more.
			s.log.Warn("raft shutdown stuck; closing the peer network first", "waited", raftShutdownWait)
			s.closeNetwork()
			select {
			case err := <-shut:
				if err != nil {
					errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
				}
			case <-time.After(raftShutdownWait):
				errs = append(errs, errors.New("raft shutdown: did not finish; closing anyway"))
			}
		}
	}
	s.closeNetwork()
	if s.logs != nil {
		if err := s.logs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
	}
	s.log.Info("member stopped")
	return errors.Join(errs...)
}

// raftShutdownWait bounds each wait for hashicorp/raft's shutdown.
const raftShutdownWait = 10 * time.Second

// closeNetwork closes the peer clients, the raft transport and the peer
// listener mux (idempotent).
func (s *Server) closeNetwork() {
	s.netCloseOnce.Do(func() {
		if s.peers != nil {
			s.peers.close()
		}
		if s.trans != nil {
			s.trans.Close()
		}
		if s.mux != nil {
			s.mux.close()
		}
	})
}

// stopGRPC drains in-flight calls, but not forever: watch streams never end
// on their own.
func stopGRPC(srv *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		srv.Stop()
	}
}

func (s *Server) voters() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// slogWriter sends hclog's lines (raft's own logging) to slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimSpace(string(p)), "component", "raft")
	return len(p), nil
}

// Removed returns a channel closed once this member has been removed from the
// cluster's configuration (after having been in it), as etcd members stop
// when removed.
func (s *Server) Removed() <-chan struct{} { return s.removedCh }

func (s *Server) watchRemoval() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	seen := false
	for {
		select {
		case <-s.stopCh:
			return
		case <-t.C:
		}
		f := s.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		in := false
		for _, srv := range f.Configuration().Servers {
			if srv.ID == serverID(s.id) {
				in = true
			}
		}
		if in {
			seen = true
		} else if seen {
			close(s.removedCh)
			return
		}
	}
}
