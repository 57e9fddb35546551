package raftstore

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"time"
)

// Member names one member of the initial cluster: its name and peer URL, as
// given in etcd's --initial-cluster name=url,... flag.
type Member struct {
	Name    string
	PeerURL string
}

// Config is everything one master's store needs. Flag names of `synod master`
// follow etcd's where they mean the same thing.
type Config struct {
	Name    string // --name: this member's human name
	DataDir string // --data-dir: raft log, stable store and snapshots

	ListenClientURLs    []string // --listen-client-urls: etcd v3 gRPC API
	AdvertiseClientURLs []string // --advertise-client-urls
	ListenPeerURLs      []string // --listen-peer-urls: raft transport + forwarding
	AdvertisePeerURL    string   // --initial-advertise-peer-urls (first one)
	ListenMetricsURLs   []string // --listen-metrics-urls: /metrics, /health, /debug/pprof over HTTP

	InitialCluster      []Member // --initial-cluster
	InitialClusterState string   // --initial-cluster-state: "new" or "existing"
	ClusterToken        string   // --initial-cluster-token

	// ClientTLS serves the client URLs over TLS when non-nil
	// (--cert-file/--key-file/--trusted-ca-file).
	ClientTLS *tls.Config
	// PeerServerTLS and PeerClientTLS secure the peer port with mutual TLS
	// (--peer-cert-file/--peer-key-file/--peer-trusted-ca-file).
	PeerServerTLS *tls.Config
	PeerClientTLS *tls.Config

	// Raft timing. Zero values take the defaults from DefaultConfig.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// SnapshotThreshold is the number of log entries after which a snapshot is
	// taken (--snapshot-count); TrailingLogs are kept after it.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// ProgressNotifyInterval is how often a watch with progress_notify gets an
	// empty response carrying the current revision (etcd: 10 minutes).
	ProgressNotifyInterval time.Duration

	// MaxRequestBytes bounds one request (etcd: 1.5 MiB).
	MaxRequestBytes int

	// AutoCompactionMode and AutoCompactionRetention are etcd's flags of the
	// same names; an empty or zero retention disables auto-compaction.
	AutoCompactionMode      string
	AutoCompactionRetention string

	// UnsafeChaosBug (test-only: proves the chaos checks can fail) turns on
	// a deliberate consistency bug: "stale-reads" serves linearizable reads
	// from this member's local state without a read index;
	// "ack-before-commit" answers a Put on the leader before it is even in
	// the log and proposes it a second later, so a leader kill loses
	// acknowledged writes. Never set it outside tests (`synod master
	// --unsafe-chaos-bug`, hidden).
	UnsafeChaosBug string
}

// The UnsafeChaosBug values (test-only: prove the chaos checks can fail).
const (
	UnsafeChaosBugStaleReads      = "stale-reads"
	UnsafeChaosBugAckBeforeCommit = "ack-before-commit"
)

// Defaults tuned for a LAN: fail over well under two seconds while staying
// stable on a loaded two-core machine.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 5 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultTrailingLogs       = 10240
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultProgressNotify     = 10 * time.Minute
	DefaultMaxRequestBytes    = 1536 * 1024
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		// raft requires lease <= heartbeat timeout.
		c.LeaderLeaseTimeout = min(DefaultLeaderLeaseTimeout, c.HeartbeatTimeout/2)
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.ProgressNotifyInterval == 0 {
		c.ProgressNotifyInterval = DefaultProgressNotify
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.InitialClusterState == "" {
		c.InitialClusterState = "new"
	}
	if c.ClusterToken == "" {
		c.ClusterToken = "synod-cluster"
	}
	return c
}

// Validate reports the first problem with c, in words an operator can act on.
func (c Config) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("--name is required")
	}
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	if len(c.ListenClientURLs) == 0 {
		return fmt.Errorf("--listen-client-urls is required")
	}
	if len(c.ListenPeerURLs) == 0 {
		return fmt.Errorf("--listen-peer-urls is required")
	}
	if c.AdvertisePeerURL == "" {
		return fmt.Errorf("--initial-advertise-peer-urls is required")
	}
	for _, u := range append(append(append([]string{}, c.ListenClientURLs...), c.ListenPeerURLs...), c.AdvertisePeerURL) {
		if _, err := parseURLHost(u); err != nil {
			return err
		}
	}
	if c.InitialClusterState != "new" && c.InitialClusterState != "existing" {
		return fmt.Errorf("--initial-cluster-state must be \"new\" or \"existing\", not %q", c.InitialClusterState)
	}
	if len(c.InitialCluster) == 0 {
		return fmt.Errorf("--initial-cluster is required (name=peer-url,...)")
	}
	found := false
	seen := map[string]bool{}
	for _, m := range c.InitialCluster {
		if seen[m.Name] {
			return fmt.Errorf("--initial-cluster names member %q twice", m.Name)
		}
		seen[m.Name] = true
		if m.Name == c.Name {
			found = true
			if m.PeerURL != c.AdvertisePeerURL {
				return fmt.Errorf("--initial-cluster gives %s=%s but --initial-advertise-peer-urls is %s", m.Name, m.PeerURL, c.AdvertisePeerURL)
			}
		}
	}
	if !found {
		return fmt.Errorf("--initial-cluster does not include this member's --name %q", c.Name)
	}
	if _, err := parseCompaction(c.AutoCompactionMode, c.AutoCompactionRetention); err != nil {
		return err
	}
	// test-only: proves the chaos checks can fail.
	if c.UnsafeChaosBug != "" && c.UnsafeChaosBug != UnsafeChaosBugStaleReads && c.UnsafeChaosBug != UnsafeChaosBugAckBeforeCommit {
		return fmt.Errorf("--unsafe-chaos-bug must be %q or %q, not %q", UnsafeChaosBugStaleReads, UnsafeChaosBugAckBeforeCommit, c.UnsafeChaosBug)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		return fmt.Errorf("election timeout (%s) must be >= heartbeat timeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	return nil
}

// parseURLHost turns "http://127.0.0.1:2380" into "127.0.0.1:2380".
func parseURLHost(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix") {
		return "", fmt.Errorf("bad URL %q: want scheme://host:port", s)
	}
	return u.Host, nil
}
