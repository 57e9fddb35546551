package bench

// The Kubernetes API benchmark (`synod bench api`): client-go clients create
// Pods through every master of a launched cluster while one watcher, on
// another master, measures how long each create takes to come back as a
// watch event.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"synod/internal/launch"
)

// PhaseCreatePod is the one phase of the API benchmark.
const PhaseCreatePod = "create-pod"

// API benchmark constants.
const (
	// APINamespace holds every pod the benchmark creates.
	APINamespace = "bench"
	// APIPodImage is the image of the benchmark pods' one container, "c".
	APIPodImage = "local/busybox:1"

	// The goal the API benchmark checks, at GoalClients clients.
	GoalClients       = 16
	GoalCreatesPerSec = 1500
	GoalP99           = 50 * time.Millisecond

	defaultWatchTimeout = 10 * time.Second
)

// APIOptions configures RunAPI. Zero values take the defaults noted per field.
type APIOptions struct {
	LaunchOptions // where and how to launch the cluster

	Clients  []int         // concurrency levels (default 1, 16, 64)
	Duration time.Duration // per level, when Ops is 0 (default 5s)
	Ops      int           // creates per level; when > 0 it replaces Duration
	Masters  int           // masters in the launched cluster (default 3)

	// WatchTimeout bounds how long a level waits, after its last create,
	// for the watcher to see every created pod (default 10s); pods not seen
	// by then count as missed.
	WatchTimeout time.Duration
}

// APIResult is the outcome of one concurrency level.
type APIResult struct {
	Phase         string        `json:"phase"`
	Clients       int           `json:"clients"`
	Creates       int           `json:"creates"` // successful creates
	Errors        int           `json:"errors"`  // failed creates (not in the latencies)
	Elapsed       time.Duration `json:"-"`
	CreatesPerSec float64       `json:"creates_per_sec"`
	P50           time.Duration `json:"-"`
	P99           time.Duration `json:"-"`
	Max           time.Duration `json:"-"`
	FirstErr      string        `json:"first_error,omitempty"`

	// Watch delay: from the start of a create call to the arrival of the
	// pod's ADDED event at the watcher.
	WatchEvents int           `json:"watch_events"` // created pods the watcher saw
	WatchMissed int           `json:"watch_missed"` // created pods it did not see in time
	WatchP50    time.Duration `json:"-"`
	WatchP99    time.Duration `json:"-"`
	WatchMax    time.Duration `json:"-"`
}

// APIReport is the outcome of RunAPI.
type APIReport struct {
	Started  time.Time
	Masters  int
	Duration time.Duration // per level; 0 when Ops is set
	Ops      int
	NumCPU   int
	Notes    []string
	Results  []APIResult
}

func (o APIOptions) withDefaults() (APIOptions, error) {
	if len(o.Clients) == 0 {
		o.Clients = []int{1, 16, 64}
	}
	for _, c := range o.Clients {
		if c < 1 {
			return o, fmt.Errorf("bench: clients must be ≥ 1, got %d", c)
		}
	}
	if o.Ops < 0 {
		return o, fmt.Errorf("bench: ops must be ≥ 0, got %d", o.Ops)
	}
	if o.Ops == 0 && o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Ops == 0 && o.Duration < 0 {
		return o, fmt.Errorf("bench: duration must be > 0, got %s", o.Duration)
	}
	if o.Ops > 0 {
		o.Duration = 0
	}
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.Masters < 1 {
		return o, fmt.Errorf("bench: masters must be ≥ 1, got %d", o.Masters)
	}
	if o.WatchTimeout == 0 {
		o.WatchTimeout = defaultWatchTimeout
	}
	var err error
	o.LaunchOptions, err = o.LaunchOptions.withDefaults(defaultReadyTimeout)
	return o, err
}

// RunAPI launches a cluster with the Kubernetes API, runs the pod-create
// workload at every concurrency level and returns the report. On error
// (including ctx's end, e.g. SIGINT) it returns the results gathered so far
// with the error; the cluster is stopped and its temporary dir removed before
// it returns.
func RunAPI(ctx context.Context, o APIOptions) (_ *APIReport, retErr error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &APIReport{
		Started:  time.Now(),
		Masters:  o.Masters,
		Duration: o.Duration,
		Ops:      o.Ops,
		NumCPU:   runtime.NumCPU(),
	}
	c, stop, err := o.startCluster(ctx, "api", fmt.Sprintf("%d masters with the Kubernetes API", o.Masters), launch.Options{Masters: o.Masters})
	defer func() {
		if err := stop(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if err != nil {
		return rep, err
	}
	withLogs := func(err error) error { return c.withLogs(ctx, err) }

	b, err := newAPIBench(o, c.Cluster)
	if err != nil {
		return rep, withLogs(err)
	}
	if err := b.ready(ctx); err != nil {
		return rep, withLogs(err)
	}
	w, err := b.startWatcher(ctx)
	if err != nil {
		return rep, withLogs(err)
	}
	defer w.stop()
	for _, n := range o.Clients {
		res, err := b.level(ctx, w, n)
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			return rep, withLogs(fmt.Errorf("bench: %s with %d clients: %w", PhaseCreatePod, n, err))
		}
		rep.Results = append(rep.Results, res)
		note := ""
		if res.Errors > 0 {
			note += fmt.Sprintf("  (%d errors, first: %s)", res.Errors, res.FirstErr)
		}
		if res.WatchMissed > 0 {
			note += fmt.Sprintf("  (%d pods not seen by the watcher within %s)", res.WatchMissed, o.WatchTimeout)
		}
		o.progressf("synod  %-10s clients=%-3d %8.0f creates/s  p50 %s  p99 %s  watch p50 %s  p99 %s%s",
			res.Phase, n, res.CreatesPerSec, fmtMs(res.P50), fmtMs(res.P99), fmtMs(res.WatchP50), fmtMs(res.WatchP99), note)
	}
	if err := w.failure(); err != nil {
		rep.Notes = append(rep.Notes, "watcher: "+err.Error())
	}
	return rep, nil
}

// apiBench is the state of one RunAPI: the cluster and the base client
// config from its admin kubeconfig.
type apiBench struct {
	o    APIOptions
	urls []string // every master's API URL
	base *rest.Config
	seq  atomic.Int64 // pod name sequence, across levels
}

func newAPIBench(o APIOptions, c *launch.Cluster) (*apiBench, error) {
	base, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
	if err != nil {
		return nil, fmt.Errorf("bench: load kubeconfig: %w", err)
	}
	b := &apiBench{o: o, base: base}
	for _, m := range c.Masters() {
		if m.APIURL == "" {
			return nil, fmt.Errorf("bench: master %s has no API URL", m.Name)
		}
		b.urls = append(b.urls, m.APIURL)
	}
	return b, nil
}

// connSet records the connections of the clients of one level, so they can
// be closed when it ends.
type connSet struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// client returns a clientset for the master at url with its own transport:
// a Dial function makes client-go skip its transport cache, so every client
// has its own connection (like each etcd client in bench kv), and QPS -1
// turns off client-side rate limiting.
func (b *apiBench) client(url string, conns *connSet) (*kubernetes.Clientset, error) {
	cfg := rest.CopyConfig(b.base)
	cfg.Host = url
	cfg.QPS = -1
	cfg.Burst = 0
	cfg.Timeout = 0 // per request via ctx; a watch must not time out
	d := &net.Dialer{Timeout: defaultDialTimeout, KeepAlive: 30 * time.Second}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil && conns != nil {
			conns.mu.Lock()
			conns.conns = append(conns.conns, c)
			conns.mu.Unlock()
		}
		return c, err
	}
	return kubernetes.NewForConfig(cfg)
}

// ready waits until every master answers /readyz and lists namespaces, then
// creates the namespace and a warm-up pod through every master (a fresh
// master serves reads a little before it forwards writes reliably, and a
// timed-out first create would count as a benchmark error).
func (b *apiBench) ready(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, b.o.ReadyTimeout)
	defer cancel()
	conns := &connSet{}
	defer conns.closeAll()
	clis := make([]*kubernetes.Clientset, len(b.urls))
	for i, u := range b.urls {
		cs, err := b.client(u, conns)
		if err != nil {
			return fmt.Errorf("bench: client for %s: %w", u, err)
		}
		clis[i] = cs
	}
	retry := func(what string, f func(context.Context) error) error {
		var err error
		for {
			octx, ocancel := context.WithTimeout(rctx, 2*time.Second)
			err = f(octx)
			ocancel()
			if err == nil {
				return nil
			}
			select {
			case <-rctx.Done():
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("bench: %s: not done within %s: %w", what, b.o.ReadyTimeout, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}

	b.o.progressf("synod: waiting for the API on %d masters", len(b.urls))
	for i, cs := range clis {
		err := retry("GET /readyz and list namespaces on "+b.urls[i], func(ctx context.Context) error {
			if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
				return err
			}
			_, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return err
		})
		if err != nil {
			return err
		}
	}
	err := retry("create namespace "+APINamespace, func(ctx context.Context) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: APINamespace}}
		_, err := clis[0].CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	for i, cs := range clis {
		name := fmt.Sprintf("warmup-%d", i)
		err := retry("create pod "+name+" through "+b.urls[i], func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods(APINamespace).Create(ctx, benchPod(name), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// benchPod is the pod the benchmark creates.
func benchPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: APINamespace},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: APIPodImage}},
		},
	}
}

// watchTracker pairs the start of each create with its watch event.
type watchTracker struct {
	mu      sync.Mutex
	pending map[string]time.Time // pod name → create start, not yet seen
	delays  []time.Duration
}

func newWatchTracker() *watchTracker {
	return &watchTracker{pending: map[string]time.Time{}}
}

// started records that the create of pod name started at t0. It must be
// called before the create request is sent.
func (t *watchTracker) started(name string, t0 time.Time) {
	t.mu.Lock()
	t.pending[name] = t0
	t.mu.Unlock()
}

// failed forgets a create that returned an error: the pod may or may not
// exist, so its event is not waited for.
func (t *watchTracker) failed(name string) {
	t.mu.Lock()
	delete(t.pending, name)
	t.mu.Unlock()
}

// seen records the arrival of pod name's ADDED event at time at.
func (t *watchTracker) seen(name string, at time.Time) {
	t.mu.Lock()
	if t0, ok := t.pending[name]; ok {
		t.delays = append(t.delays, at.Sub(t0))
		delete(t.pending, name)
	}
	t.mu.Unlock()
}

// drain waits until no create is pending or until timeout, then returns the
// delays seen and how many creates are still pending, and resets t.
func (t *watchTracker) drain(ctx context.Context, timeout time.Duration) ([]time.Duration, int) {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		t.mu.Lock()
		n := len(t.pending)
		t.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delays, missed := t.delays, len(t.pending)
	t.delays, t.pending = nil, map[string]time.Time{}
	return delays, missed
}

// apiWatcher watches the benchmark's pods through one master for the whole
// run, re-watching from the last resource version when the stream ends.
type apiWatcher struct {
	tracker *watchTracker
	cancel  context.CancelFunc
	done    chan struct{}
	conns   *connSet

	mu      sync.Mutex
	lastErr error // the last watch failure, if any
}

// startWatcher lists the pods (for a resource version) and starts watching
// from it through the last master: writers are spread round-robin from the
// first master on, so the last one has the fewest of them.
func (b *apiBench) startWatcher(ctx context.Context) (*apiWatcher, error) {
	url := b.urls[len(b.urls)-1]
	conns := &connSet{}
	cs, err := b.client(url, conns)
	if err != nil {
		return nil, fmt.Errorf("bench: watcher client for %s: %w", url, err)
	}
	lctx, lcancel := context.WithTimeout(ctx, b.o.OpTimeout)
	list, err := cs.CoreV1().Pods(APINamespace).List(lctx, metav1.ListOptions{})
	lcancel()
	if err != nil {
		conns.closeAll()
		return nil, fmt.Errorf("bench: list pods through %s: %w", url, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &apiWatcher{tracker: newWatchTracker(), cancel: cancel, done: make(chan struct{}), conns: conns}
	b.o.progressf("synod: watching pods in %q through %s from resourceVersion %s", APINamespace, url, list.ResourceVersion)
	go w.run(wctx, cs, list.ResourceVersion)
	return w, nil
}

func (w *apiWatcher) run(ctx context.Context, cs *kubernetes.Clientset, rv string) {
	defer close(w.done)
	pods := cs.CoreV1().Pods(APINamespace)
	for ctx.Err() == nil {
		wi, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			if ctx.Err() == nil {
				w.setErr(fmt.Errorf("watch from resourceVersion %s: %w", rv, err))
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		for ev := range wi.ResultChan() {
			at := time.Now()
			switch ev.Type {
			case watch.Added, watch.Modified, watch.Deleted:
				pod, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				if ev.Type == watch.Added {
					w.tracker.seen(pod.Name, at)
				}
				rv = pod.ResourceVersion
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				w.setErr(fmt.Errorf("watch error event: %w", err))
				if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					// Events were lost: start over from now; the pods
					// in between count as missed.
					lctx, lcancel := context.WithTimeout(ctx, defaultOpTimeout)
					if l, err := pods.List(lctx, metav1.ListOptions{}); err == nil {
						rv = l.ResourceVersion
					}
					lcancel()
				}
			}
		}
		wi.Stop()
	}
}

func (w *apiWatcher) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

func (w *apiWatcher) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

func (w *apiWatcher) stop() {
	w.cancel()
	w.conns.closeAll()
	<-w.done
}

// level runs the create phase with n clients, client i on master i%masters,
// each with its own connection.
func (b *apiBench) level(ctx context.Context, w *apiWatcher, n int) (APIResult, error) {
	res := APIResult{Phase: PhaseCreatePod, Clients: n}
	conns := &connSet{}
	defer conns.closeAll()
	clis := make([]*kubernetes.Clientset, n)
	for i := range n {
		cs, err := b.client(b.urls[i%len(b.urls)], conns)
		if err != nil {
			return res, err
		}
		clis[i] = cs
	}
	// Warm up: connect every client (TLS handshake and all) before timing.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, cs := range clis {
		wg.Go(func() {
			gctx, cancel := context.WithTimeout(ctx, b.o.OpTimeout)
			defer cancel()
			if _, err := cs.CoreV1().Namespaces().Get(gctx, APINamespace, metav1.GetOptions{}); err != nil {
				errs[i] = fmt.Errorf("warm-up get through %s: %w", b.urls[i%len(b.urls)], err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}

	d := drive(ctx, n, b.o.Duration, b.o.Ops, b.o.OpTimeout, func(octx context.Context, i int) error {
		name := "bench-" + strconv.FormatInt(b.seq.Add(1), 10)
		w.tracker.started(name, time.Now())
		_, err := clis[i].CoreV1().Pods(APINamespace).Create(octx, benchPod(name), metav1.CreateOptions{})
		if err != nil {
			w.tracker.failed(name)
		}
		return err
	})
	res.Elapsed = d.elapsed
	if err := ctx.Err(); err != nil {
		return res, err
	}
	delays, missed := w.tracker.drain(ctx, b.o.WatchTimeout)
	if err := ctx.Err(); err != nil {
		return res, err
	}

	res.Creates, res.Errors = len(d.sorted), d.errors
	if d.firstErr != nil {
		res.FirstErr = d.firstErr.Error()
	}
	if res.Creates == 0 {
		return res, fmt.Errorf("no create succeeded (%d failed; first error: %v)", res.Errors, d.firstErr)
	}
	res.CreatesPerSec = float64(res.Creates) / res.Elapsed.Seconds()
	res.P50, res.P99, res.Max = latencies(d.sorted)

	slices.Sort(delays)
	res.WatchEvents, res.WatchMissed = len(delays), missed
	res.WatchP50, res.WatchP99, res.WatchMax = latencies(delays)
	return res, nil
}

// Goal reports whether the run met the goal (≥ GoalCreatesPerSec creates/s
// and p99 < GoalP99 at GoalClients clients); measured is false when no
// level ran with GoalClients clients.
func (r *APIReport) Goal() (met, measured bool) {
	for _, res := range r.Results {
		if res.Clients == GoalClients {
			return res.CreatesPerSec >= GoalCreatesPerSec && res.P99 < GoalP99, true
		}
	}
	return false, false
}

// GoalLine is the one-line verdict on the goal.
func (r *APIReport) GoalLine() string {
	goal := fmt.Sprintf("Goal: >= %s creates/s and p99 < %d ms at %d clients",
		thousands(GoalCreatesPerSec), GoalP99/time.Millisecond, GoalClients)
	met, measured := r.Goal()
	switch {
	case !measured:
		return goal + fmt.Sprintf(": not measured (no level with %d clients).", GoalClients)
	case met:
		return goal + ": met."
	default:
		return goal + ": NOT met."
	}
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Markdown renders the report as a padded Markdown table and the goal line.
func (r *APIReport) Markdown() string {
	var b strings.Builder
	per := fmt.Sprintf("%s per level", r.Duration)
	if r.Ops > 0 {
		per = fmt.Sprintf("%d creates per level", r.Ops)
	}
	fmt.Fprintf(&b, "synod bench api, %s: %d-master cluster on loopback, %d CPUs, %s, client-go clients (one connection each, no rate limit) round-robin over the masters creating pods in namespace %q; watch delay is create start → ADDED event at one watcher.\n\n",
		r.Started.Format("2006-01-02"), r.Masters, r.NumCPU, per, APINamespace)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "> Note: %s\n\n", n)
	}
	withErrors := false
	for _, res := range r.Results {
		if res.Errors > 0 || res.WatchMissed > 0 {
			withErrors = true
		}
	}
	head := []string{"phase", "clients", "creates/s", "p50", "p99", "watch p50", "watch p99"}
	right := []bool{false, true, true, true, true, true, true}
	if withErrors {
		head = append(head, "errors", "watch missed")
		right = append(right, true, true)
	}
	var rows [][]string
	for _, res := range r.Results {
		row := []string{res.Phase, strconv.Itoa(res.Clients), fmt.Sprintf("%.0f", res.CreatesPerSec),
			fmtMs(res.P50), fmtMs(res.P99), fmtMs(res.WatchP50), fmtMs(res.WatchP99)}
		if withErrors {
			row = append(row, strconv.Itoa(res.Errors), strconv.Itoa(res.WatchMissed))
		}
		rows = append(rows, row)
	}
	writeTable(&b, head, right, rows)
	b.WriteString("\n" + r.GoalLine() + "\n")
	return b.String()
}

// JSON renders the report for machines: latencies in milliseconds.
func (r *APIReport) JSON() ([]byte, error) {
	type result struct {
		APIResult
		ElapsedS   float64 `json:"elapsed_s"`
		P50Ms      float64 `json:"p50_ms"`
		P99Ms      float64 `json:"p99_ms"`
		MaxMs      float64 `json:"max_ms"`
		WatchP50Ms float64 `json:"watch_p50_ms"`
		WatchP99Ms float64 `json:"watch_p99_ms"`
		WatchMaxMs float64 `json:"watch_max_ms"`
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	met, measured := r.Goal()
	type goal struct {
		Clients       int     `json:"clients"`
		CreatesPerSec float64 `json:"min_creates_per_sec"`
		P99Ms         float64 `json:"max_p99_ms"`
		Measured      bool    `json:"measured"`
		Met           bool    `json:"met"`
	}
	out := struct {
		Started   time.Time `json:"started"`
		Masters   int       `json:"masters"`
		DurationS float64   `json:"duration_s,omitempty"`
		Ops       int       `json:"ops_per_level,omitempty"`
		NumCPU    int       `json:"num_cpu"`
		Notes     []string  `json:"notes,omitempty"`
		Results   []result  `json:"results"`
		Goal      goal      `json:"goal"`
	}{
		Started: r.Started, Masters: r.Masters, DurationS: r.Duration.Seconds(), Ops: r.Ops,
		NumCPU: r.NumCPU, Notes: r.Notes, Results: []result{},
		Goal: goal{Clients: GoalClients, CreatesPerSec: GoalCreatesPerSec, P99Ms: ms(GoalP99), Measured: measured, Met: met},
	}
	for _, res := range r.Results {
		out.Results = append(out.Results, result{APIResult: res, ElapsedS: res.Elapsed.Seconds(),
			P50Ms: ms(res.P50), P99Ms: ms(res.P99), MaxMs: ms(res.Max),
			WatchP50Ms: ms(res.WatchP50), WatchP99Ms: ms(res.WatchP99), WatchMaxMs: ms(res.WatchMax)})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
