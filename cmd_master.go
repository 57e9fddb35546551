package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"synod/raftstore"
)

// runStore runs one master's store; non-const so tests can capture the
// Config instead of starting a store.
var runStore = runMasterServices

// evenClusterAdvice explains why --initial-cluster refuses an even size.
const evenClusterAdvice = "an even number of voters tolerates no more failures than one fewer " +
	"(4 survive 1 loss, like 3) and a network split can leave no side with a majority; " +
	"use 1, 3, 5 or 7 masters, or pass --allow-even-cluster if you mean it"

func masterCommand() *cli.Command {
	return &cli.Command{
		Name:      "master",
		Usage:     "run one master: a member of the replicated store, serving the etcd and Kubernetes APIs",
		UsageText: "synod master [flags]  (flag names and meanings follow etcd's)",
		Flags: append([]cli.Flag{
			etcdString("name", "default", "human-readable name of this member"),
			etcdString("data-dir", "", "directory for the raft log, snapshots and store (default \"<name>.synod\")"),
			etcdString("listen-client-urls", "http://127.0.0.1:2379", "comma-separated URLs to serve the etcd v3 client API on"),
			etcdString("advertise-client-urls", "", "comma-separated client URLs to advertise to the cluster (default: --listen-client-urls)"),
			etcdString("listen-peer-urls", "http://127.0.0.1:2380", "comma-separated URLs to listen on for peer (raft) traffic"),
			etcdString("initial-advertise-peer-urls", "http://127.0.0.1:2380", "this member's peer URLs to advertise; the first is used"),
			etcdString("listen-metrics-urls", "", "comma-separated URLs to serve /metrics, /health and /debug/pprof on (default: none)"),
			etcdString("initial-cluster", "", "initial cluster as name=peer-url,... (default \"<name>=<first advertised peer url>\")"),
			etcdString("initial-cluster-state", "new", "\"new\" to bootstrap a cluster, \"existing\" to join one"),
			etcdString("initial-cluster-token", "synod-cluster", "token that tells clusters apart during bootstrap"),
			etcdString("cert-file", "", "client server TLS certificate file"),
			etcdString("key-file", "", "client server TLS key file"),
			etcdString("trusted-ca-file", "", "CA file to verify client certificates with (see --client-cert-auth)"),
			&cli.BoolFlag{Name: "client-cert-auth", EnvVars: []string{"ETCD_CLIENT_CERT_AUTH"}, Usage: "require client certificates signed by --trusted-ca-file"},
			etcdString("peer-cert-file", "", "peer TLS certificate file (mutual TLS: needs --peer-key-file and --peer-trusted-ca-file)"),
			etcdString("peer-key-file", "", "peer TLS key file"),
			etcdString("peer-trusted-ca-file", "", "CA file that signs every peer's certificate"),
			&cli.IntFlag{Name: "heartbeat-interval", EnvVars: []string{"ETCD_HEARTBEAT_INTERVAL"}, Value: int(raftstore.DefaultHeartbeatTimeout / time.Millisecond), Usage: "raft heartbeat interval in ms"},
			&cli.IntFlag{Name: "election-timeout", EnvVars: []string{"ETCD_ELECTION_TIMEOUT"}, Value: int(raftstore.DefaultElectionTimeout / time.Millisecond), Usage: "raft election timeout in ms"},
			&cli.Uint64Flag{Name: "snapshot-count", EnvVars: []string{"ETCD_SNAPSHOT_COUNT"}, Value: raftstore.DefaultSnapshotThreshold, Usage: "committed entries that trigger a snapshot"},
			etcdString("auto-compaction-mode", "periodic", "\"periodic\" (retention is a duration) or \"revision\" (retention is a count)"),
			etcdString("auto-compaction-retention", "0", "history to keep: e.g. 1h, 30m or 1 (hours) in periodic mode, 10000 in revision mode; 0 disables"),
			&cli.IntFlag{Name: "secure-port", Value: 6443, Usage: "HTTPS port of the Kubernetes API (0 turns it off)"},
			&cli.StringFlag{Name: "bind-address", Value: "127.0.0.1", Usage: "address the Kubernetes API listens on (0.0.0.0 for all)"},
			&cli.StringFlag{Name: "tls-cert-file", Usage: "Kubernetes API serving certificate (default: issued from the CA in --pki-dir)"},
			&cli.StringFlag{Name: "tls-private-key-file", Usage: "key of --tls-cert-file"},
			&cli.StringFlag{Name: "client-ca-file", Usage: "CA that signs client certificates (CN = user, O = groups) (default: the CA in --pki-dir)"},
			&cli.StringFlag{Name: "token-auth-file", Usage: "static bearer tokens, Kubernetes' CSV format: token,user,uid,\"group1,group2\""},
			&cli.StringFlag{Name: "pki-dir", Usage: "CA directory used when certificate files are not given; an admin.kubeconfig is written there (default \"<data-dir>/pki\")"},
			&cli.StringFlag{Name: "service-cluster-ip-range", Value: "10.96.0.0/12", Usage: "CIDR that Service cluster IPs are allocated from"},
			&cli.BoolFlag{Name: "allow-even-cluster", Usage: "allow an even-sized --initial-cluster (not recommended)"},
			// test-only: proves the chaos checks can fail (chaos/check tests).
			&cli.StringFlag{Name: "unsafe-chaos-bug", Hidden: true, Usage: "test-only deliberate consistency bug: \"stale-reads\" or \"ack-before-commit\""},
		}, append(componentFlags(), gossipFlags()...)...),
		Action: runMaster,
	}
}

// etcdString is a string flag that, like etcd's, can also come from ETCD_<NAME>.
func etcdString(name, value, usage string) *cli.StringFlag {
	env := "ETCD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	return &cli.StringFlag{Name: name, Value: value, Usage: usage, EnvVars: []string{env}}
}

func runMaster(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().Slice())
	}
	cfg, err := masterConfig(c)
	if err != nil {
		return usageError(c, "%v", err)
	}
	api := apiOptions{securePort: c.Int("secure-port"), bindAddress: c.String("bind-address"), tlsCert: c.String("tls-cert-file"),
		tlsKey: c.String("tls-private-key-file"), clientCA: c.String("client-ca-file"), tokenFile: c.String("token-auth-file"),
		pkiDir: c.String("pki-dir"), serviceCIDR: c.String("service-cluster-ip-range")}
	if api.securePort < 0 || api.securePort > 65535 {
		return usageError(c, "--secure-port %d is not a port", api.securePort)
	}
	if api.components, err = componentConfig(c); err != nil {
		return usageError(c, "%v", err)
	}
	if api.gossip, err = gossipConfig(c); err != nil {
		return usageError(c, "%v", err)
	}
	if api.gossip.addr != "" && api.securePort == 0 {
		return usageError(c, "--gossip-addr announces the Kubernetes API: it needs --secure-port")
	}
	if (api.tlsCert == "") != (api.tlsKey == "") {
		return usageError(c, "--tls-cert-file and --tls-private-key-file go together")
	}
	log := logger(c).With("name", cfg.Name)
	routeKlog(log)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("starting master", "data-dir", cfg.DataDir, "client-urls", cfg.ListenClientURLs,
		"peer-url", cfg.AdvertisePeerURL, "initial-cluster-state", cfg.InitialClusterState, "members", len(cfg.InitialCluster))
	err = runStore(ctx, cfg, api, log)
	if err != nil && !errors.Is(err, context.Canceled) {
		return runtimeError(c, err)
	}
	log.Info("master stopped")
	return nil
}

// masterConfig turns the flags into a validated raftstore.Config.
func masterConfig(c *cli.Context) (raftstore.Config, error) {
	name := c.String("name")
	cfg := raftstore.Config{
		Name:                name,
		DataDir:             c.String("data-dir"),
		InitialClusterState: c.String("initial-cluster-state"),
		ClusterToken:        c.String("initial-cluster-token"),
		HeartbeatTimeout:    time.Duration(c.Int("heartbeat-interval")) * time.Millisecond,
		ElectionTimeout:     time.Duration(c.Int("election-timeout")) * time.Millisecond,
		SnapshotThreshold:   c.Uint64("snapshot-count"),

		AutoCompactionMode:      c.String("auto-compaction-mode"),
		AutoCompactionRetention: c.String("auto-compaction-retention"),

		UnsafeChaosBug: c.String("unsafe-chaos-bug"), // test-only: proves the chaos checks can fail
	}
	if cfg.DataDir == "" {
		cfg.DataDir = name + ".synod"
	}
	var err error
	if cfg.ListenClientURLs, err = urlList("--listen-client-urls", c.String("listen-client-urls")); err != nil {
		return cfg, err
	}
	cfg.AdvertiseClientURLs = cfg.ListenClientURLs
	if c.String("advertise-client-urls") != "" {
		if cfg.AdvertiseClientURLs, err = urlList("--advertise-client-urls", c.String("advertise-client-urls")); err != nil {
			return cfg, err
		}
	}
	if cfg.ListenPeerURLs, err = urlList("--listen-peer-urls", c.String("listen-peer-urls")); err != nil {
		return cfg, err
	}
	if s := c.String("listen-metrics-urls"); s != "" {
		if cfg.ListenMetricsURLs, err = urlList("--listen-metrics-urls", s); err != nil {
			return cfg, err
		}
	}
	peers, err := urlList("--initial-advertise-peer-urls", c.String("initial-advertise-peer-urls"))
	if err != nil {
		return cfg, err
	}
	cfg.AdvertisePeerURL = peers[0]
	initial := c.String("initial-cluster")
	if initial == "" {
		initial = name + "=" + cfg.AdvertisePeerURL // as etcd does for a non-default --name
	}
	if cfg.InitialCluster, err = parseInitialCluster(initial); err != nil {
		return cfg, err
	}
	if c.Int("heartbeat-interval") <= 0 || c.Int("election-timeout") <= 0 {
		return cfg, fmt.Errorf("--heartbeat-interval and --election-timeout must be positive (milliseconds)")
	}
	if err := masterTLS(c, &cfg); err != nil {
		return cfg, err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid configuration: %w", err)
	}
	if n := len(cfg.InitialCluster); n%2 == 0 && cfg.InitialClusterState == "new" && !c.Bool("allow-even-cluster") {
		// A joining member's --initial-cluster lists the cluster mid-change
		// (growing 3 to 5 passes 4), so only bootstrap is checked.
		return cfg, fmt.Errorf("--initial-cluster has %d members: %s", n, evenClusterAdvice)
	}
	return cfg, nil
}

// urlList splits a comma-separated URL flag and checks each URL.
func urlList(flag, s string) ([]string, error) {
	var urls []string
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		urls = append(urls, u)
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("%s is empty", flag)
	}
	return urls, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("bad URL %q: want http(s)://host:port", s)
	}
	return nil
}

// parseInitialCluster parses name=url,name=url.
func parseInitialCluster(s string) ([]raftstore.Member, error) {
	var ms []raftstore.Member
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not name=peer-url", part)
		}
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("--initial-cluster: %s: %w", name, err)
		}
		ms = append(ms, raftstore.Member{Name: name, PeerURL: u})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("--initial-cluster is empty")
	}
	return ms, nil
}

// masterTLS fills the client and peer TLS configs from the flags.
func masterTLS(c *cli.Context, cfg *raftstore.Config) error {
	cert, key, ca := c.String("cert-file"), c.String("key-file"), c.String("trusted-ca-file")
	if (cert == "") != (key == "") {
		return fmt.Errorf("--cert-file and --key-file go together")
	}
	if c.Bool("client-cert-auth") && ca == "" {
		return fmt.Errorf("--client-cert-auth needs --trusted-ca-file")
	}
	if cert != "" {
		tc, err := serverTLS(cert, key, ca, c.Bool("client-cert-auth"))
		if err != nil {
			return err
		}
		cfg.ClientTLS = tc
	} else if ca != "" || c.Bool("client-cert-auth") {
		return fmt.Errorf("--trusted-ca-file and --client-cert-auth need --cert-file and --key-file")
	}
	if cfg.ClientTLS == nil && anyHTTPS(cfg.ListenClientURLs) {
		return fmt.Errorf("https in --listen-client-urls needs --cert-file and --key-file")
	}

	pcert, pkey, pca := c.String("peer-cert-file"), c.String("peer-key-file"), c.String("peer-trusted-ca-file")
	switch {
	case pcert == "" && pkey == "" && pca == "":
		if anyHTTPS(cfg.ListenPeerURLs) || anyHTTPS([]string{cfg.AdvertisePeerURL}) {
			return fmt.Errorf("https peer URLs need --peer-cert-file, --peer-key-file and --peer-trusted-ca-file")
		}
	case pcert == "" || pkey == "" || pca == "":
		return fmt.Errorf("peer TLS is mutual: give all of --peer-cert-file, --peer-key-file and --peer-trusted-ca-file")
	default:
		srv, err := serverTLS(pcert, pkey, pca, true)
		if err != nil {
			return err
		}
		pc, err := clientTLS(pcert, pkey, pca)
		if err != nil {
			return err
		}
		cfg.PeerServerTLS, cfg.PeerClientTLS = srv, pc
	}
	return nil
}

func anyHTTPS(urls []string) bool {
	for _, u := range urls {
		if strings.HasPrefix(u, "https://") {
			return true
		}
	}
	return false
}

// serverTLS loads a server certificate; with verifyClients, clients must
// present a certificate signed by the CA in caFile.
func serverTLS(certFile, keyFile, caFile string, verifyClients bool) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load %s/%s: %w", certFile, keyFile, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadCA(caFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		if verifyClients {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

// clientTLS builds a client config: certificate optional, CA optional
// (system roots when empty).
func clientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load %s/%s: %w", certFile, keyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pool, err := loadCA(caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
