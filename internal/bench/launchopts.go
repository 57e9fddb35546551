package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"synod/internal/launch"
)

// LaunchOptions are what every Kubernetes-API benchmark that launches its
// own synod cluster shares.
type LaunchOptions struct {
	Dir         string // parent of the temporary data dir (default os.TempDir())
	SynodBinary string // the synod binary (required)

	Logger   *slog.Logger // launcher logs (default: discarded)
	Progress io.Writer    // one line per step (default: none)

	ReadyTimeout time.Duration // for the cluster to be usable (default per benchmark)
	OpTimeout    time.Duration // per request (default 10s)
}

// withDefaults fills the zero fields; ready is the benchmark's default
// ReadyTimeout.
func (o LaunchOptions) withDefaults(ready time.Duration) (LaunchOptions, error) {
	if o.SynodBinary == "" {
		return o, errors.New("bench: SynodBinary is required")
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = ready
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = defaultOpTimeout
	}
	return o, nil
}

// progressf writes one progress line.
func (o LaunchOptions) progressf(format string, args ...any) {
	fmt.Fprintf(o.Progress, format+"\n", args...)
}

// benchCluster is a benchmark's own cluster.
type benchCluster struct {
	*launch.Cluster
	dir     string
	workers int
}

// startCluster starts the cluster lo describes (Binary, Dir, API, Logger and
// StopTimeout are filled in) in a fresh temporary dir under o.Dir; what
// names it in the progress line. stop stops the cluster and removes the
// dir; it is never nil, also when err is not.
func (o LaunchOptions) startCluster(ctx context.Context, name, what string, lo launch.Options) (c *benchCluster, stop func() error, err error) {
	stop = func() error { return nil }
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, stop, fmt.Errorf("bench: %w", err)
	}
	tmp, err := os.MkdirTemp(o.Dir, "synod-bench-"+name+"-")
	if err != nil {
		return nil, stop, fmt.Errorf("bench: %w", err)
	}
	lo.Binary, lo.Dir, lo.API, lo.Logger = o.SynodBinary, filepath.Join(tmp, "synod"), true, o.Logger
	lo.StopTimeout = 5 * time.Second // the data is thrown away
	o.progressf("synod: starting %s under %s", what, lo.Dir)
	lc, err := launch.Start(ctx, lo)
	stop = func() error {
		defer os.RemoveAll(tmp)
		if lc == nil {
			return nil
		}
		o.progressf("synod: stopping cluster")
		if err := lc.Stop(); err != nil {
			return fmt.Errorf("bench: stop cluster: %w", err)
		}
		return nil
	}
	if err != nil {
		return nil, stop, fmt.Errorf("bench: start cluster: %w", err)
	}
	return &benchCluster{Cluster: lc, dir: lo.Dir, workers: lo.Workers}, stop, nil
}

// withLogs explains a failure with the cluster's logs while they exist.
func (c *benchCluster) withLogs(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	return fmt.Errorf("%w%s%s", err, logTails(c.Masters()), workerLogTails(c.dir, c.workers))
}
