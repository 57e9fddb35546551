package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"synod/internal/pki"
)

// Ports every master uses on its own bridge address.
const (
	clientPort = 2379
	peerPort   = 2380
	apiPort    = 6443
)

// ClusterConfig configures StartCluster.
type ClusterConfig struct {
	Binary     string   // the synod binary
	Masters    int      // 3, 5 or 7
	Dir        string   // data dirs and the PKI go here
	LogDir     string   // per-master log files (m1.log, ...)
	MasterArgs []string // appended to every `synod master`'s args
	// Workers starts this many `synod worker`s, each in a namespace of
	// its own on the bridge; the masters then join a gossip pool.
	Workers int
	Logger  *slog.Logger
}

// Cluster is a running set of masters in network namespaces.
type Cluster struct {
	cfg     ClusterConfig
	log     *slog.Logger
	masters []*master
	etcd    []*clientv3.Client // one per master, pinned to its endpoint
	kube    []kubernetes.Interface
	workers []*worker

	mu sync.Mutex // guards the masters' proc fields
}

// master is one master's fixed layout plus its current process.
type master struct {
	name, ip, netns                     string
	clientURL, peerURL, apiURL, dataDir string
	logPath                             string
	args                                []string

	proc *exec.Cmd     // nil before the first start
	done chan struct{} // closed when proc is reaped
}

// StartCluster lays out the network namespaces of a fresh cluster (the
// caller holds the machine lock and has cleaned leftovers), starts every
// master and waits until each answers a linearizable read. On error what
// was started is stopped and removed again.
func StartCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, retErr error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger}
	defer func() {
		if retErr != nil {
			c.Close()
		}
	}()
	if err := setupBridge(ctx); err != nil {
		return nil, err
	}
	pkiDir := filepath.Join(cfg.Dir, "pki")
	ca, err := pki.EnsureCA(pkiDir)
	if err != nil {
		return nil, fmt.Errorf("chaos: cluster CA: %w", err)
	}
	var initial []string
	for i := 0; i < cfg.Masters; i++ {
		ip := masterIP(i)
		m := &master{
			name: memberName(i), ip: ip, netns: netnsName(i),
			clientURL: fmt.Sprintf("http://%s:%d", ip, clientPort),
			peerURL:   fmt.Sprintf("http://%s:%d", ip, peerPort),
			apiURL:    fmt.Sprintf("https://%s:%d", ip, apiPort),
			dataDir:   filepath.Join(cfg.Dir, memberName(i)),
			logPath:   filepath.Join(cfg.LogDir, memberName(i)+".log"),
		}
		c.masters = append(c.masters, m)
		initial = append(initial, m.name+"="+m.peerURL)
		if err := setupNetns(ctx, i); err != nil {
			return nil, err
		}
	}
	for _, m := range c.masters {
		m.args = append([]string{"master",
			"--name", m.name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL,
			"--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL,
			"--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "synod-chaos",
			"--secure-port", strconv.Itoa(apiPort),
			"--bind-address", m.ip,
			"--pki-dir", pkiDir,
			// Short component leases, so that a killed scheduler's
			// successor takes over within seconds and the failover is
			// measurable within a short run.
			"--leader-elect-lease-duration", "3s",
			"--leader-elect-renew-deadline", "2s",
			"--leader-elect-retry-period", "250ms",
		}, cfg.MasterArgs...)
		if cfg.Workers > 0 {
			m.args = append(m.args, "--gossip-addr", gossipAddr(m.ip), "--gossip-join", gossipAddr(c.masters[0].ip))
		}
	}
	if err := c.writeKubeconfig(ca); err != nil {
		return nil, err
	}
	for i := range c.masters {
		if err := c.Start(i); err != nil {
			return nil, err
		}
	}
	for _, m := range c.masters {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, fmt.Errorf("chaos: etcd client for %s: %w", m.name, err)
		}
		c.etcd = append(c.etcd, cli)
		rc, err := clientcmd.BuildConfigFromFlags(m.apiURL, c.KubeconfigPath())
		if err != nil {
			return nil, fmt.Errorf("chaos: kube client for %s: %w", m.name, err)
		}
		rc.Timeout = 2 * time.Second
		kc, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("chaos: kube client for %s: %w", m.name, err)
		}
		c.kube = append(c.kube, kc)
	}
	// A master that dies at birth (a bad --master-arg, a broken binary)
	// fails the start at once, with its last words.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	died := make(chan error, 1)
	for _, m := range c.masters {
		go func() {
			select {
			case <-m.done:
				died <- fmt.Errorf("chaos: %s exited during startup; last lines of %s:\n%s", m.name, m.logPath, logTail(m.logPath, 10))
				cancel()
			case <-sctx.Done():
			}
		}()
	}
	if err := c.WaitHealthy(sctx, 60*time.Second); err != nil {
		select {
		case derr := <-died:
			return nil, derr
		default:
			return nil, err
		}
	}
	if cfg.Workers > 0 {
		if err := c.startWorkers(ctx, cfg.Workers); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// writeKubeconfig writes an admin kubeconfig pointing at m1's API.
func (c *Cluster) writeKubeconfig(ca *pki.CA) error {
	certPEM, keyPEM, err := ca.IssueClient("admin", []string{"system:masters"}, 24*time.Hour)
	if err != nil {
		return fmt.Errorf("chaos: admin certificate: %w", err)
	}
	if err := pki.WriteKubeconfig(c.KubeconfigPath(), c.masters[0].apiURL, ca.CertPEM(), certPEM, keyPEM, "admin"); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return nil
}

// KubeconfigPath is the admin kubeconfig (server: m1).
func (c *Cluster) KubeconfigPath() string { return filepath.Join(c.cfg.Dir, "kubeconfig") }

// Size is the number of masters.
func (c *Cluster) Size() int { return len(c.masters) }

// Name is master i's name.
func (c *Cluster) Name(i int) string { return c.masters[i].name }

// EtcdEndpoints are the masters' etcd client URLs.
func (c *Cluster) EtcdEndpoints() []string {
	eps := make([]string, len(c.masters))
	for i, m := range c.masters {
		eps[i] = m.clientURL
	}
	return eps
}

// KubeServers are the masters' Kubernetes API URLs.
func (c *Cluster) KubeServers() []string {
	s := make([]string, len(c.masters))
	for i, m := range c.masters {
		s[i] = m.apiURL
	}
	return s
}

// LogPath is master i's log file.
func (c *Cluster) LogPath(i int) string { return c.masters[i].logPath }

// Start starts master i (again) in its namespace. Its output is appended
// to its log file after a marker line.
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.masters[i]
	if m.proc != nil && !isClosed(m.done) {
		return fmt.Errorf("chaos: %s is already running (pid %d)", m.name, m.proc.Process.Pid)
	}
	if err := os.MkdirAll(m.dataDir, 0o700); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	fmt.Fprintf(logf, "--- chaos %s: starting %s in netns %s\n", time.Now().UTC().Format(time.RFC3339Nano), m.name, m.netns)
	// nsenter execs the binary after setns (no fork for a network
	// namespace), so the pid is the master's own: it is what the Lease
	// holder identity <name>_<pid> names. Setpgid keeps a terminal's
	// Ctrl-C away from the masters; the harness stops them itself. No
	// Pdeathsig: it fires when the spawning OS thread exits, not the
	// process, and would kill masters at random.
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + m.netns, c.cfg.Binary}, m.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("chaos: start %s: %w", m.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.proc, m.done = cmd, done
	c.log.Info("master started", "name", m.name, "pid", cmd.Process.Pid)
	return nil
}

// Running reports whether master i's process is alive (paused counts).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.masters[i]
	return m.proc != nil && !isClosed(m.done)
}

// PID is master i's current pid, 0 when it is not running.
func (c *Cluster) PID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.masters[i]
	if m.proc == nil || isClosed(m.done) {
		return 0
	}
	return m.proc.Process.Pid
}

// Signal sends sig to master i. For SIGKILL it also waits (up to 10s) until
// the process is reaped, so that a restart can bind its ports.
func (c *Cluster) Signal(i int, sig syscall.Signal) error {
	return c.SignalAll([]int{i}, sig)
}

// SignalAll sends sig to every master in idx first and only then, for
// SIGKILL, waits for them to be reaped: a majority dies at one instant, not
// one member at a time with a quorum left in between.
func (c *Cluster) SignalAll(idx []int, sig syscall.Signal) error {
	var errs []error
	var reap []chan struct{}
	for _, i := range idx {
		c.mu.Lock()
		m := c.masters[i]
		if m.proc == nil || isClosed(m.done) {
			c.mu.Unlock()
			errs = append(errs, fmt.Errorf("chaos: %s is not running", m.name))
			continue
		}
		pid, done := m.proc.Process.Pid, m.done
		c.mu.Unlock()
		if err := syscall.Kill(pid, sig); err != nil {
			errs = append(errs, fmt.Errorf("chaos: signal %s (pid %d): %w", m.name, pid, err))
			continue
		}
		c.log.Info("signalled master", "name", m.name, "pid", pid, "signal", sig.String())
		reap = append(reap, done)
	}
	if sig == syscall.SIGKILL {
		deadline := time.Now().Add(10 * time.Second)
		for _, done := range reap {
			select {
			case <-done:
			case <-time.After(time.Until(deadline)):
				errs = append(errs, fmt.Errorf("chaos: a master was not reaped 10s after SIGKILL"))
			}
		}
	}
	return errors.Join(errs...)
}

// Isolate cuts the masters in side off from all the others, both ways: the
// side's namespaces drop every packet to and from the other masters. The
// namespaces are programmed in parallel, so the cut takes effect at once.
func (c *Cluster) Isolate(ctx context.Context, side []int) error {
	var outIPs []string
	for i, m := range c.masters {
		if !slices.Contains(side, i) {
			outIPs = append(outIPs, m.ip)
		}
	}
	return c.each(side, func(i int) error {
		if err := dropPeers(ctx, c.masters[i].netns, outIPs); err != nil {
			return fmt.Errorf("chaos: partition: %w", err)
		}
		return nil
	})
}

// HealNetwork removes every partition rule.
func (c *Cluster) HealNetwork(ctx context.Context) error {
	all := make([]int, len(c.masters))
	for i := range all {
		all[i] = i
	}
	return c.each(all, func(i int) error { return healNetns(ctx, c.masters[i].netns) })
}

// each runs f for every index in idx concurrently and joins the errors.
func (c *Cluster) each(idx []int, f func(i int) error) error {
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for j, i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[j] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// HealAll undoes every fault: network rules flushed, paused masters
// continued, dead masters started.
func (c *Cluster) HealAll(ctx context.Context) error {
	errs := []error{c.HealNetwork(ctx)}
	for i := range c.masters {
		if c.Running(i) {
			if err := c.Signal(i, syscall.SIGCONT); err != nil {
				errs = append(errs, err)
			}
		} else if err := c.Start(i); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leader returns the index of the raft leader as most answering masters
// see it, or an error when none answers with a leader.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	type answer struct {
		id, leader uint64
	}
	answers := make([]answer, len(c.masters))
	var wg sync.WaitGroup
	for i, m := range c.masters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st, err := c.etcd[i].Status(sctx, m.clientURL)
			if err == nil {
				answers[i] = answer{id: st.Header.MemberId, leader: st.Leader}
			}
		}()
	}
	wg.Wait()
	votes := map[uint64]int{}
	for _, a := range answers {
		if a.leader != 0 {
			votes[a.leader]++
		}
	}
	var best uint64
	for id, n := range votes {
		if n > votes[best] || (n == votes[best] && id < best) {
			best = id
		}
	}
	for i, a := range answers {
		if best != 0 && a.id == best {
			return i, nil
		}
	}
	return -1, fmt.Errorf("chaos: no master reports a leader that answers")
}

// LeaseHolder returns the index of the master whose process holds Lease
// kube-system/name (identity <master>_<pid>), asking each master's API in
// turn.
func (c *Cluster) LeaseHolder(ctx context.Context, name string) (int, string, error) {
	var lastErr error
	for i := range c.masters {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		lease, err := c.kube[i].CoordinationV1().Leases("kube-system").Get(lctx, name, metav1.GetOptions{})
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return -1, "", fmt.Errorf("chaos: lease %s has no holder", name)
		}
		id := *lease.Spec.HolderIdentity
		holder, _, _ := strings.Cut(id, "_")
		for j, m := range c.masters {
			if m.name == holder {
				return j, id, nil
			}
		}
		return -1, id, fmt.Errorf("chaos: lease %s holder %q is no master of this cluster", name, id)
	}
	return -1, "", fmt.Errorf("chaos: read lease %s: %w", name, lastErr)
}

// Healthy reports nil when every master answers a linearizable read and
// all agree on one leader.
func (c *Cluster) Healthy(ctx context.Context) error {
	return etcdHealthy(ctx, c.etcd, c.EtcdEndpoints(), c.Name, c.Running)
}

// WaitHealthy polls Healthy until it holds or timeout passes.
func (c *Cluster) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	return waitHealthy(ctx, timeout, 200*time.Millisecond, c.Healthy)
}

// Close stops every master (SIGCONT and SIGTERM, SIGKILL after 5s), closes
// the clients and removes the namespaces and the bridge. Data dirs stay;
// the caller decides about them.
func (c *Cluster) Close() error {
	// Workers first, while the API can still tell their kubelets to stop
	// the pods.
	workersErr := c.stopWorkers()
	for _, cli := range c.etcd {
		cli.Close()
	}
	c.mu.Lock()
	var running []*master
	for _, m := range c.masters {
		if m.proc != nil && !isClosed(m.done) {
			running = append(running, m)
			syscall.Kill(m.proc.Process.Pid, syscall.SIGCONT)
			syscall.Kill(m.proc.Process.Pid, syscall.SIGTERM)
		}
	}
	c.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for _, m := range running {
		select {
		case <-m.done:
		case <-time.After(time.Until(deadline)):
			syscall.Kill(-m.proc.Process.Pid, syscall.SIGKILL)
			select {
			case <-m.done:
			case <-time.After(10 * time.Second):
				c.log.Error("master not reaped after SIGKILL", "name", m.name, "pid", m.proc.Process.Pid)
			}
		}
	}
	// Whatever else runs in the namespaces goes with them.
	return errors.Join(workersErr, cleanupMachine())
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
