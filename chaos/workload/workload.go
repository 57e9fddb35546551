package workload

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"synod/chaos/history"
)

// Config configures a workload.
type Config struct {
	// EtcdEndpoints is one etcd client URL per master. Most clients are
	// pinned to one member (like etcd's robustness "member clients"), so a
	// faulty member's answers are its own; a quarter use all members
	// ("cluster clients", failing over inside clientv3).
	EtcdEndpoints []string
	// EtcdTLS is the etcd clients' TLS config (CA and client certificate)
	// for https endpoints, as a deployed cluster serves; nil = plain.
	EtcdTLS *tls.Config
	// Kubeconfig is an admin kubeconfig; KubeServers each master's https
	// apiserver URL (Kubernetes clients are spread over them). Without a
	// Kubeconfig there are no Kubernetes-API clients.
	Kubeconfig  string
	KubeServers []string

	Clients        int           // etcd-API clients; default 6
	Keys           int           // keys they contend on; default 8
	Watchers       int           // watchers of the key prefix; default 2
	Seed           int64         // seeds the clients' choices
	RequestTimeout time.Duration // per request; default 2s
	Logger         *slog.Logger

	// Rate is the etcd-API operations per second of all clients together
	// (default 200): enough to contend, few enough that porcupine checks a
	// long run in seconds.
	Rate float64
	// KubeClients is the number of Kubernetes-API clients (default 2 when
	// Kubeconfig is set); KubeRate their operations per second together
	// (default 10).
	KubeClients int
	KubeRate    float64
	// KeyPrefix is where the keys live; default "/chaos/<start unix nanos>/"
	// so that every run starts from absent keys.
	KeyPrefix string
	// KubeNamespace holds the ConfigMaps and Deployments; default "default".
	KubeNamespace string
}

func (c Config) withDefaults() Config {
	if c.Clients <= 0 {
		c.Clients = 6
	}
	if c.Keys <= 0 {
		c.Keys = 8
	}
	if c.Watchers < 0 {
		c.Watchers = 0
	} else if c.Watchers == 0 {
		c.Watchers = 2
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Rate <= 0 {
		c.Rate = 200
	}
	if c.Kubeconfig != "" && c.KubeClients <= 0 {
		c.KubeClients = 2
	}
	if c.KubeRate <= 0 {
		c.KubeRate = 10
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = fmt.Sprintf("/chaos/%d/", time.Now().UnixNano())
	}
	if c.KubeNamespace == "" {
		c.KubeNamespace = "default"
	}
	return c
}

// Stats are the running counts for the harness's progress line.
type Stats struct {
	Ops, OK, Failed, Unknown int64 // etcd-API operations
	KubeOps, KubeOK          int64
	LastWriteOK              time.Time // completion of the latest acknowledged etcd write
}

// Workload is a running workload.
type Workload struct {
	cfg  Config
	base time.Time // see now
	keys []string
	log  *slog.Logger

	parent        context.Context // Start's: when it ends, Stop does not wait for anything
	clientsCtx    context.Context
	stopClients   context.CancelFunc
	watchersCtx   context.Context
	stopWatchers  context.CancelFunc
	clientsWG     sync.WaitGroup
	watchersWG    sync.WaitGroup
	etcdClients   []*clientv3.Client // one per member, then one for all members
	kube          *kubeClients
	stopOnce      sync.Once
	stoppedResult *history.History

	mu       sync.Mutex
	hist     history.History
	stats    Stats
	lastRev  map[int]int64 // watcher -> last revision received
	maxAcked int64         // highest revision of an acknowledged write
}

// Start starts the clients and watchers; they run until Stop (or ctx ends).
// It fails when the store cannot be reached at all within a few request
// timeouts, since the history needs a starting revision.
func Start(ctx context.Context, cfg Config) (*Workload, error) {
	if len(cfg.EtcdEndpoints) == 0 {
		return nil, fmt.Errorf("workload: no etcd endpoints")
	}
	cfg = cfg.withDefaults()
	w := &Workload{cfg: cfg, log: cfg.Logger.With("part", "workload"), lastRev: map[int]int64{}, base: time.Now()}
	for i := 0; i < cfg.Keys; i++ {
		w.keys = append(w.keys, fmt.Sprintf("%sk%d", cfg.KeyPrefix, i))
	}
	w.hist.KeyPrefix = cfg.KeyPrefix
	w.hist.KubeNamespace = cfg.KubeNamespace
	eps := append(append([][]string{}, splitEach(cfg.EtcdEndpoints)...), cfg.EtcdEndpoints)
	for _, e := range eps {
		c, err := clientv3.New(clientv3.Config{Endpoints: e, Logger: zap.NewNop(), TLS: cfg.EtcdTLS,
			DialKeepAliveTime: time.Second, DialKeepAliveTimeout: cfg.RequestTimeout})
		if err != nil {
			w.closeClients()
			return nil, fmt.Errorf("workload: etcd client for %v: %w", e, err)
		}
		w.etcdClients = append(w.etcdClients, c)
	}
	// The starting revision: the keys are absent up to it, and the
	// watchers start right after it.
	startRev, err := w.startRevision(ctx)
	if err != nil {
		w.closeClients()
		return nil, err
	}
	w.hist.StartRev = startRev
	if cfg.Kubeconfig != "" {
		if w.kube, err = newKubeClients(cfg, w); err != nil {
			w.closeClients()
			return nil, err
		}
	}
	w.parent = ctx
	w.clientsCtx, w.stopClients = context.WithCancel(context.WithoutCancel(ctx))
	w.watchersCtx, w.stopWatchers = context.WithCancel(context.WithoutCancel(ctx))
	go func() { // everything in the background stops with ctx
		select {
		case <-ctx.Done():
			w.stopClients()
			w.stopWatchers()
		case <-w.watchersCtx.Done():
		}
	}()
	for i := 0; i < cfg.Watchers; i++ {
		wt := history.Watcher{Watcher: i, Prefix: cfg.KeyPrefix, All: i == 0, StartRev: startRev + 1}
		w.hist.Watchers = append(w.hist.Watchers, wt)
		w.lastRev[i] = startRev
		w.watchersWG.Add(1)
		go func() {
			defer w.watchersWG.Done()
			w.runWatcher(w.watchersCtx, wt)
		}()
	}
	nCluster := cfg.Clients / 4
	interval := time.Duration(float64(time.Second) * float64(cfg.Clients) / cfg.Rate)
	for i := 0; i < cfg.Clients; i++ {
		c, ep := w.etcdClients[len(w.etcdClients)-1], "all"
		if i < cfg.Clients-nCluster {
			c, ep = w.etcdClients[i%len(cfg.EtcdEndpoints)], cfg.EtcdEndpoints[i%len(cfg.EtcdEndpoints)]
		}
		w.clientsWG.Add(1)
		go func() {
			defer w.clientsWG.Done()
			w.runClient(w.clientsCtx, i, c, ep, rand.New(rand.NewSource(cfg.Seed*1000+int64(i))), interval)
		}()
	}
	if w.kube != nil {
		w.kube.start(w.clientsCtx, &w.clientsWG)
	}
	w.log.Info("workload started", "clients", cfg.Clients, "cluster_clients", nCluster, "keys", cfg.Keys,
		"watchers", cfg.Watchers, "kube_clients", cfg.KubeClients, "prefix", cfg.KeyPrefix, "start_rev", startRev)
	return w, nil
}

func splitEach(eps []string) [][]string {
	var out [][]string
	for _, e := range eps {
		out = append(out, []string{e})
	}
	return out
}

func (w *Workload) closeClients() {
	for _, c := range w.etcdClients {
		c.Close()
	}
}

// startRevision reads the store's revision through any member.
func (w *Workload) startRevision(ctx context.Context) (int64, error) {
	deadline := time.Now().Add(5 * w.cfg.RequestTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		for _, c := range w.etcdClients {
			rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
			resp, err := c.Get(rctx, w.cfg.KeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			cancel()
			if err == nil {
				if resp.Count != 0 {
					return 0, fmt.Errorf("workload: key prefix %q is not empty (%d keys)", w.cfg.KeyPrefix, resp.Count)
				}
				return resp.Header.Revision, nil
			}
			lastErr = err
			if ctx.Err() != nil {
				return 0, fmt.Errorf("workload: read start revision: %w", ctx.Err())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("workload: read start revision: %w", lastErr)
}

// runClient is one etcd-API client: one request at a time (the checks
// assume it), paced to its share of the rate.
func (w *Workload) runClient(ctx context.Context, id int, c *clientv3.Client, endpoint string, rng *rand.Rand, interval time.Duration) {
	known := map[string]int64{} // key -> mod revision last seen (0 = absent)
	next := time.Now()
	for seq := 0; ; seq++ {
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else {
			next = time.Now() // behind (a stall): do not burst to catch up
		}
		if ctx.Err() != nil {
			return
		}
		key := w.keys[rng.Intn(len(w.keys))]
		op := history.Op{Client: id, Key: key, Endpoint: endpoint}
		rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
		var err error
		switch p := rng.Intn(100); {
		case p < 40:
			op.Kind = history.KindGet
			op.Call = w.now()
			var resp *clientv3.GetResponse
			if resp, err = c.Get(rctx, key); err == nil {
				op.Revision = resp.Header.Revision
				if len(resp.Kvs) > 0 {
					op.Found, op.GotValue, op.GotModRev = true, string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision
				}
				known[key] = op.GotModRev
			}
		case p < 70:
			op.Kind, op.Value = history.KindPut, fmt.Sprintf("%d.%d", id, seq)
			op.Call = w.now()
			var resp *clientv3.PutResponse
			if resp, err = c.Put(rctx, key, op.Value); err == nil {
				op.Revision = resp.Header.Revision
				known[key] = op.Revision
			}
		case p < 90:
			op.Kind, op.Value, op.ExpectModRev = history.KindCAS, fmt.Sprintf("%d.%d", id, seq), known[key]
			op.Call = w.now()
			var resp *clientv3.TxnResponse
			resp, err = c.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", op.ExpectModRev)).
				Then(clientv3.OpPut(key, op.Value)).Commit()
			if err == nil {
				op.Revision, op.Succeeded = resp.Header.Revision, resp.Succeeded
				if resp.Succeeded {
					known[key] = op.Revision
				}
			}
		default:
			op.Kind = history.KindDelete
			op.Call = w.now()
			var resp *clientv3.DeleteResponse
			if resp, err = c.Delete(rctx, key); err == nil {
				op.Revision, op.Found = resp.Header.Revision, resp.Deleted > 0
				known[key] = 0
			}
		}
		cancel()
		w.record(op, err)
	}
}

// now is the time in unix nanoseconds, read off the monotonic clock from
// the workload's start: a wall-clock step during a run must not reorder
// the history that porcupine checks.
func (w *Workload) now() int64 { return w.base.UnixNano() + int64(time.Since(w.base)) }

// record completes op with err and appends it to the history.
func (w *Workload) record(op history.Op, err error) {
	t := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Ops++
	switch {
	case err == nil:
		op.OK, op.Return = true, t
		w.stats.OK++
		if op.IsWrite() {
			w.stats.LastWriteOK = time.Unix(0, t)
			if op.Revision > w.maxAcked {
				w.maxAcked = op.Revision
			}
		}
	case op.IsWrite():
		// It may have been applied (a timeout, a lost connection, a
		// leader that died after committing): etcd's robustness tests
		// keep such an op open until the end of the history.
		op.Unknown, op.Return, op.Ended, op.Err = true, history.Unknown, t, err.Error()
		w.stats.Unknown++
	default:
		op.Return, op.Ended, op.Err = t, t, err.Error()
		w.stats.Failed++
	}
	w.hist.Ops = append(w.hist.Ops, op)
}

// Stats returns the counts so far.
func (w *Workload) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	if w.kube != nil {
		s.KubeOps, s.KubeOK = w.kube.counts()
	}
	return s
}

// FirstWriteOKAfter returns the completion time of the first acknowledged
// write that was invoked at or after t: the end of the recovery from a
// fault injected at t.
func (w *Workload) FirstWriteOKAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return FirstWriteOKAfter(w.hist.Ops, t)
}

// FirstWriteOKAfter is Workload.FirstWriteOKAfter on a recorded history.
func FirstWriteOKAfter(ops []history.Op, t time.Time) (time.Time, bool) {
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

// drainTimeout bounds how long Stop waits for watchers to catch up with the
// last acknowledged write, and for the final Kubernetes reads.
const drainTimeout = 15 * time.Second

// Stop stops the clients, lets the watchers catch up with the last
// acknowledged write (bounded), stops them, reads the Kubernetes objects'
// final state from every apiserver and returns the history. Call it after
// the final heal. When Start's context has ended (an interrupted run) it
// only stops everything. It is safe to call more than once.
func (w *Workload) Stop() *history.History {
	w.stopOnce.Do(func() {
		w.stopClients()
		w.clientsWG.Wait()
		deadline := time.Now().Add(drainTimeout)
		for time.Now().Before(deadline) && w.parent.Err() == nil && !w.watchersCaughtUp() {
			time.Sleep(50 * time.Millisecond)
		}
		w.stopWatchers()
		w.watchersWG.Wait()
		if w.kube != nil {
			var final []history.KubeFinal
			if w.parent.Err() == nil {
				final = w.kube.finalState(deadline.Add(drainTimeout))
			}
			w.mu.Lock()
			w.hist.KubeFinal = final
			w.hist.Kube = w.kube.ops()
			w.mu.Unlock()
		}
		w.closeClients()
		w.mu.Lock()
		for i := range w.hist.Watchers {
			w.hist.Watchers[i].LastRev = w.lastRev[i]
		}
		h := w.hist
		w.mu.Unlock()
		w.stoppedResult = &h
		w.log.Info("workload stopped", "ops", len(h.Ops), "watch_events", len(h.Watches), "kube_ops", len(h.Kube))
	})
	return w.stoppedResult
}

func (w *Workload) watchersCaughtUp() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.lastRev {
		if r < w.maxAcked {
			return false
		}
	}
	return true
}

// errStalled ends a watch stream that stopped delivering while writes were
// being acknowledged (its member is dead or cut off): it is resumed on the
// next member from the last revision + 1.
var errStalled = errors.New("watch stalled: writes acknowledged but no event")

// runWatcher watches the key prefix (watcher 0: the whole keyspace) from
// wt.StartRev, and whenever the stream ends or stalls re-creates the watch
// on the next member from the last revision received + 1, recording it.
func (w *Workload) runWatcher(ctx context.Context, wt history.Watcher) {
	eps := len(w.cfg.EtcdEndpoints)
	ep := wt.Watcher % eps
	from := wt.StartRev
	for {
		reason, compactRev := w.watchOnce(ctx, wt, w.etcdClients[ep], &from)
		if ctx.Err() != nil {
			return
		}
		ep = (ep + 1) % eps
		r := history.WatchResume{Watcher: wt.Watcher, FromRev: from, At: w.now(), Reason: reason}
		if compactRev > 0 {
			r.Compacted, r.CompactRev = true, compactRev
			from = compactRev
		}
		w.mu.Lock()
		w.hist.WatchResumes = append(w.hist.WatchResumes, r)
		w.mu.Unlock()
		w.log.Info("watch resumed", "watcher", wt.Watcher, "from", from, "endpoint", w.cfg.EtcdEndpoints[ep], "reason", reason)
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watchOnce runs one watch stream until it ends, and says why.
func (w *Workload) watchOnce(ctx context.Context, wt history.Watcher, c *clientv3.Client, from *int64) (reason string, compactRev int64) {
	// RequireLeader: a member cut off from the leader ends the stream
	// instead of silently delivering nothing.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	key, opts := wt.Prefix, []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(*from)}
	if wt.All {
		key, opts = "\x00", []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithRev(*from)}
	}
	ch := c.Watch(wctx, key, opts...)
	stall := 2*w.cfg.RequestTimeout + time.Second
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastEvent := time.Now()
	var pendingSince time.Time
	for {
		select {
		case <-ctx.Done():
			return "stopped", 0
		case resp, ok := <-ch:
			if !ok {
				return "stream closed", 0
			}
			if resp.CompactRevision > 0 {
				return "compacted", resp.CompactRevision
			}
			if err := resp.Err(); err != nil {
				return err.Error(), 0
			}
			if len(resp.Events) == 0 {
				continue
			}
			at := w.now()
			evs := make([]history.WatchEvent, 0, len(resp.Events))
			for _, ev := range resp.Events {
				e := history.WatchEvent{Watcher: wt.Watcher, Key: string(ev.Kv.Key), Type: ev.Type.String(),
					ModRev: ev.Kv.ModRevision, Revision: resp.Header.Revision, At: at}
				if ev.Type == clientv3.EventTypePut && hasPrefix(e.Key, wt.Prefix) {
					e.Value = string(ev.Kv.Value)
				}
				evs = append(evs, e)
				*from = ev.Kv.ModRevision + 1
			}
			w.mu.Lock()
			w.hist.Watches = append(w.hist.Watches, evs...)
			w.lastRev[wt.Watcher] = *from - 1
			w.mu.Unlock()
			lastEvent, pendingSince = time.Now(), time.Time{}
		case <-tick.C:
			w.mu.Lock()
			lastOK, caughtUp := w.stats.LastWriteOK, w.lastRev[wt.Watcher] >= w.maxAcked
			w.mu.Unlock()
			if caughtUp || !lastOK.After(lastEvent) {
				pendingSince = time.Time{}
				continue
			}
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			} else if time.Since(pendingSince) > stall {
				return errStalled.Error(), 0
			}
		}
	}
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
