package workload

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"synod/chaos/history"
)

// Config configures a workload.
type Config struct {
	// EtcdEndpoints is one etcd client URL per master. Most clients are
	// pinned to one member (like etcd's robustness "member clients"), so a
	// faulty member's answers are attributed to it; a few use all members.
	EtcdEndpoints []string
	// Kubeconfig is an admin kubeconfig; KubeServers each master's https
	// apiserver URL (Kubernetes clients are spread over them). Without a
	// Kubeconfig there are no Kubernetes-API clients.
	Kubeconfig  string
	KubeServers []string

	Clients        int           // etcd-API clients; default 6
	Keys           int           // keys they contend on; default 8
	Watchers       int           // watchers of the key prefix; default 2
	KubeClients    int           // Kubernetes-API clients; default 2 when Kubeconfig is set
	Seed           int64         // seeds the clients' choices
	RequestTimeout time.Duration // per request; default 2s
	Logger         *slog.Logger
}

// Stats are the running counts for the harness's progress line.
type Stats struct {
	Ops, OK, Failed, Unknown int64
	KubeOps, KubeOK          int64
	LastWriteOK              time.Time
}

// Workload is a running workload.
type Workload struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	hist    history.History
	stats   Stats
	writeOK []time.Time // completion times of acknowledged writes, ascending
	stopped bool
}

// Start starts the clients and watchers; they run until Stop or ctx ends.
func Start(ctx context.Context, cfg Config) (*Workload, error) {
	if len(cfg.EtcdEndpoints) == 0 {
		return nil, fmt.Errorf("workload: no etcd endpoints")
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Workload{cfg: cfg, cancel: cancel}
	return w, nil
}

// Stats returns the counts so far.
func (w *Workload) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// FirstWriteOKAfter returns the completion time of the first acknowledged
// write that was invoked at or after t: the end of the recovery from a
// fault injected at t.
func (w *Workload) FirstWriteOKAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return firstWriteOKAfter(w.hist.Ops, t)
}

func firstWriteOKAfter(ops []history.Op, t time.Time) (time.Time, bool) {
	var best int64
	for _, o := range ops {
		if o.OK && o.IsWrite() && o.Call >= t.UnixNano() && (best == 0 || o.Return < best) {
			best = o.Return
		}
	}
	if best == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, best), true
}

// Stop stops the clients and watchers (bounded by the request timeout) and
// returns the history.
func (w *Workload) Stop() *history.History {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	h := w.hist
	return &h
}
