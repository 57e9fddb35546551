package bench

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"time"
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
