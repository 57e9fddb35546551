package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	clog "github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultNamespace is the containerd namespace Kubernetes runtimes use.
const DefaultNamespace = "k8s.io"

// Snapshotter is the snapshotter images are unpacked for (Debian's
// containerd default, and what works on this kernel).
const Snapshotter = "overlayfs"

// Config configures Start.
type Config struct {
	// Socket is the address of a running containerd. If empty, Start runs a
	// private containerd under StateDir/containerd and Close stops it.
	Socket string
	// Namespace is the containerd namespace (DefaultNamespace if empty).
	Namespace string
	// StateDir holds the private daemon (if any) and the log FIFOs. It
	// must survive a kubelet restart for logs to be re-attached; keep it
	// short, since the daemon's unix socket path lives under it.
	StateDir string
	// PullTimeout bounds a whole registry pull (2 minutes if zero).
	PullTimeout time.Duration
	// Logger gets the runtime's logs (discarded if nil).
	Logger *slog.Logger
	// Registerer, if set, gets the runtime's metrics.
	Registerer prometheus.Registerer
}

// Runtime is a client of one containerd daemon. All methods are safe for
// concurrent use.
type Runtime struct {
	client      *containerd.Client
	ns          string
	stateDir    string
	socket      string
	pullTimeout time.Duration
	log         *slog.Logger
	clog        *clog.Entry // containerd client logs, bridged to log
	metrics     *metrics
	daemon      *daemon // nil when connected to someone else's socket

	// ctx is cancelled by Close; it stops the log copiers and exit and
	// event watchers (not the containers).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	attached map[string]*logIO // container ID → its log copier
}

// Start connects to containerd (starting a private daemon if Config.Socket
// is empty) and re-attaches log copiers to containers that are still
// running, so a restarted kubelet keeps writing their logs.
func Start(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("runtime: Config.StateDir is required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.PullTimeout == 0 {
		cfg.PullTimeout = 2 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "runtime")
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "fifo"), 0o700); err != nil {
		return nil, fmt.Errorf("runtime: create state dir: %w", err)
	}
	r := &Runtime{
		ns:          cfg.Namespace,
		stateDir:    cfg.StateDir,
		socket:      cfg.Socket,
		pullTimeout: cfg.PullTimeout,
		log:         log,
		attached:    map[string]*logIO{},
		clog:        containerdLogger(log),
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	r.metrics = m
	if r.socket == "" {
		d, sock, err := startDaemon(ctx, filepath.Join(cfg.StateDir, "containerd"), log)
		if err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
		r.daemon, r.socket = d, sock
	}
	if _, err := os.Stat(r.socket); err != nil {
		r.stopDaemon()
		return nil, fmt.Errorf("runtime: no containerd socket at %s: %w", r.socket, err)
	}
	client, err := containerd.New(r.socket, containerd.WithDefaultNamespace(r.ns), containerd.WithTimeout(10*time.Second))
	if err != nil {
		r.stopDaemon()
		return nil, fmt.Errorf("runtime: connect to containerd at %s: %w", r.socket, err)
	}
	r.client = client
	r.ctx, r.cancel = context.WithCancel(r.nsCtx(context.Background()))
	if _, err := client.Version(r.nsCtx(ctx)); err != nil {
		r.Close()
		return nil, fmt.Errorf("runtime: containerd at %s: %w", r.socket, err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.watchOOM()
	}()
	if err := r.reattach(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("runtime: re-attach running containers: %w", err)
	}
	return r, nil
}

// Socket is the containerd address in use (the private daemon's, if any):
// `synod image import --containerd-socket` needs it.
func (r *Runtime) Socket() string { return r.socket }

// Version is the containerd daemon's version (e.g. "1.6.20~ds1"), for the
// Node's nodeInfo.containerRuntimeVersion.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(r.nsCtx(ctx))
	if err != nil {
		return "", fmt.Errorf("runtime: containerd version: %w", err)
	}
	return v.Version, nil
}

// Namespace is the containerd namespace in use.
func (r *Runtime) Namespace() string { return r.ns }

// Close stops the log copiers and watchers and, if Start started the
// daemon, the daemon. Containers keep running (their shims outlive both),
// so a new Runtime on the same StateDir adopts them.
func (r *Runtime) Close() error {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	r.closeAttached()
	var err error
	if r.client != nil {
		err = r.client.Close()
	}
	r.stopDaemon()
	if err != nil {
		return fmt.Errorf("runtime: close client: %w", err)
	}
	return nil
}

func (r *Runtime) stopDaemon() {
	if r.daemon != nil {
		r.daemon.stop()
		r.daemon = nil
	}
}

// nsCtx puts the runtime's containerd namespace into ctx.
func (r *Runtime) nsCtx(ctx context.Context) context.Context {
	return clog.WithLogger(namespaces.WithNamespace(ctx, r.ns), r.clog)
}
