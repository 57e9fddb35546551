// Package launch starts and supervises a local cluster of `synod master`
// processes on loopback ports. `synod up`, the end-to-end tests and the chaos
// harness all use it, so a cluster is always laid out the same way: one data
// dir and one log file per master under Options.Dir, and a cluster.json that
// names every master's pid and URLs.
//
// launch is not a process manager for production: ports are picked on
// 127.0.0.1 only, and a master is restarted (when Options.Restart is set) with
// exactly the arguments it first had.
package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"synod/internal/pki"
	"time"
)

var (
	// ErrNotRunning is returned by Kill for a master that has exited.
	ErrNotRunning = errors.New("launch: master is not running")
	// ErrRunning is returned by StartMaster for a master that is running.
	ErrRunning = errors.New("launch: master is already running")
	// ErrStopped is returned by StartMaster after Stop.
	ErrStopped = errors.New("launch: cluster is stopped")
)

// StateFile is the name of the file, under Options.Dir, that describes the
// running cluster.
const StateFile = "cluster.json"

// Options configures Start. Zero values take the defaults noted per field.
type Options struct {
	Binary    string   // path to the synod binary
	Masters   int      // number of masters; 1, 3, 5 or 7 are sensible
	Dir       string   // root of data dirs, logs and cluster.json
	Restart   bool     // restart masters that die (not before Start returns)
	ExtraArgs []string // appended to every master's args
	Logger    *slog.Logger

	// Workers starts this many `synod worker`s (needs API), each in its
	// own network namespace bridged to the host (see workers.go).
	Workers int

	// API runs the Kubernetes API on every master (a third port each), with
	// certificates from a CA in Dir/pki, and writes an admin kubeconfig to
	// Dir/kubeconfig. Without it synod masters run with --secure-port 0.
	API bool

	// BasePort, when non-zero, fixes the ports: master i (from 0) listens
	// for clients on BasePort+2i and for peers on BasePort+2i+1, so
	// BasePort 2379 gives m1 etcd's default ports. Zero picks free ports.
	BasePort int

	// Command builds the process for a master; nil runs Binary with m.Args.
	// Tests use it to run something else (for example etcd, whose flags
	// synod master shares) in place of synod.
	Command func(m Master) *exec.Cmd

	// StartTimeout bounds how long Start waits for each master to bind its
	// ports (default 20s). A master still alive but not listening by then
	// is left running: Start only detects masters that die at birth.
	StartTimeout time.Duration
	// StopTimeout bounds how long Stop waits after SIGTERM before it sends
	// SIGKILL (default 15s: a leader hands leadership over first).
	StopTimeout time.Duration
}

// Master describes one master process. PID is 0 while it is not running.
type Master struct {
	Name      string   `json:"name"`
	PID       int      `json:"pid"`
	ClientURL string   `json:"client_url"`
	PeerURL   string   `json:"peer_url"`
	DataDir   string   `json:"data_dir"`
	LogFile   string   `json:"log_file"`
	APIURL    string   `json:"api_url,omitempty"` // the Kubernetes API, with Options.API
	Gossip    string   `json:"gossip,omitempty"`  // gossip HOST:PORT, with Options.Workers
	Args      []string `json:"args,omitempty"`    // argv after the binary, starting with "master"

	Running  bool   `json:"-"`
	Restarts int    `json:"-"` // times the master was started after its first start
	LastExit string `json:"-"` // how the last run ended, e.g. "signal: killed"
}

// Cluster is a set of master processes started by Start. Its methods are safe
// for concurrent use.
type Cluster struct {
	opts   Options
	log    *slog.Logger
	dir    string
	lock   *os.File // flock on Dir, held until Stop
	stopCh chan struct{}
	// spawner forks the masters (see threadSpawner for why one thread).
	spawner *threadSpawner

	// writeMu serializes cluster.json writes; it is taken before mu and
	// never while holding it.
	writeMu sync.Mutex

	// mu guards the fields below.
	mu       sync.Mutex
	members  []*member
	started  bool // Start has returned: restarts may begin
	stopping bool

	workers     []*worker // with Options.Workers
	workersLock *os.File  // machine-wide, held while workers may run

	wg sync.WaitGroup // reapers and pending restarts; Stop waits for them

	stopOnce sync.Once
	stopErr  error
}

// member is a Master plus the state of its current process.
type member struct {
	Master
	proc     *process // nil when never started
	spawning bool     // a spawn is between its checks and cmd.Start
}

// process is one run of a master.
type process struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{} // closed once reaped
	err     error         // cmd.Wait's result; valid after done
}

func (o Options) withDefaults() Options {
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.Dir == "" {
		o.Dir = ".cluster"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 20 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 15 * time.Second
	}
	return o
}

// Start lays out Dir, starts every master and writes cluster.json. It waits
// only until each master has bound its ports (or StartTimeout passes), not for
// a leader: call WaitReady for that. ctx bounds the startup only; the masters
// live until Stop.
//
// If Dir already holds a cluster.json, its names, ports and data dirs are
// reused (the raft state in the data dirs names the peers by those URLs), and
// Masters must match. A fresh cluster whose master fails to bind a freshly
// picked port (another process took it in between) is restarted on new ports.
func Start(ctx context.Context, o Options) (_ *Cluster, retErr error) {
	o = o.withDefaults()
	if o.Masters < 1 {
		return nil, fmt.Errorf("launch: Masters must be positive, not %d", o.Masters)
	}
	if o.Binary == "" && o.Command == nil {
		return nil, errors.New("launch: Options.Binary is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: o, log: o.Logger, dir: dir, lock: lock, stopCh: make(chan struct{}), spawner: newThreadSpawner()}
	defer func() {
		if retErr != nil {
			c.Stop()
		}
	}()

	prev, err := readState(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	if o.API {
		// One CA for the whole cluster, made before any master can race to.
		if _, err := pki.EnsureCA(c.pkiDir()); err != nil {
			return nil, fmt.Errorf("launch: cluster CA: %w", err)
		}
	}
	if o.Workers > 0 {
		if !o.API || prev != nil {
			return nil, errors.New("launch: workers need the API and a fresh cluster dir")
		}
		lock, err := lockWorkers(ctx)
		if err != nil {
			return nil, err
		}
		c.workersLock = lock
		if err := c.ensureHostBridge(); err != nil {
			return nil, err
		}
	}
	if prev != nil {
		err = c.startExisting(ctx, prev)
	} else {
		err = c.startFresh(ctx)
	}
	if err == nil && o.API {
		err = c.writeKubeconfig()
	}
	if err == nil && o.Workers > 0 {
		err = c.startWorkers(ctx)
	}
	return c, err
}

// startExisting restarts the masters named by a previous cluster.json.
func (c *Cluster) startExisting(ctx context.Context, prev *state) error {
	if len(prev.Masters) != c.opts.Masters {
		return fmt.Errorf("launch: %s describes %d masters, not %d: use that count or a fresh dir",
			filepath.Join(c.dir, StateFile), len(prev.Masters), c.opts.Masters)
	}
	for _, pm := range prev.Masters {
		for _, u := range []string{pm.ClientURL, pm.PeerURL, pm.APIURL} {
			if u == "" {
				continue
			}
			if err := checkFree(u); err != nil {
				return fmt.Errorf("launch: %s: %w (is another cluster running from %s?)", pm.Name, err, c.dir)
			}
		}
	}
	c.setMembers(c.layout(prev.Masters))
	c.log.Info("reusing existing cluster", "dir", c.dir, "masters", len(c.members))
	if err := c.spawnAll(); err != nil {
		return err
	}
	return c.finishStart(ctx, false)
}

// startFresh lays out a new cluster, retrying on new ports after a port race.
func (c *Cluster) startFresh(ctx context.Context) error {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		ports, err := c.ports()
		if err != nil {
			return err
		}
		proto := make([]Master, c.opts.Masters)
		per := c.portsPerMaster()
		for i := range proto {
			proto[i] = Master{
				Name:      fmt.Sprintf("m%d", i+1),
				ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[per*i]),
				PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[per*i+1]),
			}
			if c.opts.API {
				proto[i].APIURL = fmt.Sprintf("https://%s:%d", c.apiHost(), ports[per*i+2])
			}
			if c.opts.Workers > 0 {
				proto[i].Gossip = fmt.Sprintf("%s:%d", hostBridgeIP, ports[per*i+3])
			}
		}
		c.setMembers(c.layout(proto))
		for _, m := range c.members {
			if err := requireEmptyDir(m.DataDir); err != nil {
				return err
			}
		}
		if err := c.spawnAll(); err != nil {
			return err
		}
		err = c.finishStart(ctx, true)
		if !errors.Is(err, errPortRace) || c.opts.BasePort != 0 || attempt == attempts {
			return err
		}
		c.log.Warn("port race at startup; retrying on new ports", "attempt", attempt, "err", err)
		c.killAll()
		for _, m := range c.members {
			os.RemoveAll(m.DataDir) // created by this Start, and empty before it
		}
	}
}

func (c *Cluster) setMembers(ms []*member) {
	c.mu.Lock()
	c.members = ms
	c.mu.Unlock()
}

// layout fills in data dirs, log files and args for masters named in proto.
func (c *Cluster) layout(proto []Master) []*member {
	var initial string
	for i, m := range proto {
		if i > 0 {
			initial += ","
		}
		initial += m.Name + "=" + m.PeerURL
	}
	members := make([]*member, len(proto))
	for i, p := range proto {
		m := Master{
			Name:      p.Name,
			ClientURL: p.ClientURL,
			PeerURL:   p.PeerURL,
			APIURL:    p.APIURL,
			Gossip:    p.Gossip,
			DataDir:   filepath.Join(c.dir, p.Name),
			LogFile:   filepath.Join(c.dir, p.Name+".log"),
		}
		m.Args = append([]string{"master",
			"--name", m.Name,
			"--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", initial,
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "synod-up",
		}, c.apiArgs(m)...)
		if m.Gossip != "" {
			m.Args = append(m.Args, "--gossip-addr", m.Gossip, "--gossip-join", proto[0].Gossip)
		}
		m.Args = append(m.Args, c.opts.ExtraArgs...)
		members[i] = &member{Master: m}
	}
	return members
}

// finishStart waits for every master to bind its ports, then writes
// cluster.json and enables restarts.
func (c *Cluster) finishStart(ctx context.Context, fresh bool) error {
	if err := c.waitListening(ctx, fresh); err != nil {
		return err
	}
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	c.writeState()
	// A master that died between waitListening and now was not restarted
	// by its reaper (started was false): catch up.
	for i := range c.members {
		c.maybeRestart(i)
	}
	return nil
}

// Endpoints returns the masters' client URLs.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.ClientURL
	}
	return eps
}

// Masters returns a copy of every master's description.
func (c *Cluster) Masters() []Master {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unsafeMasters()
}

// unsafeMasters is Masters for callers holding mu.
func (c *Cluster) unsafeMasters() []Master {
	ms := make([]Master, len(c.members))
	for i, m := range c.members {
		ms[i] = m.Master
		ms[i].Args = append([]string(nil), m.Args...)
	}
	return ms
}

// Dir returns the absolute cluster directory.
func (c *Cluster) Dir() string { return c.dir }

// StateFile returns the absolute path of cluster.json.
func (c *Cluster) StateFile() string { return filepath.Join(c.dir, StateFile) }

// EtcdCommand returns an Options.Command that runs the etcd binary at path in
// place of `synod master`. synod master takes etcd's flag names, so the same
// args serve; tests use it to exercise the launcher and the client commands
// against a real etcd while synod's own store is under construction.
func EtcdCommand(path string) func(m Master) *exec.Cmd {
	return func(m Master) *exec.Cmd {
		return exec.Command(path, m.Args[1:]...) // drop "master"
	}
}
