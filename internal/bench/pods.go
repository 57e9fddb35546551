package bench

// The worker benchmark (`synod bench pods`): pod startup latency on real
// workers. A launched cluster with workers (each `synod worker` in its own
// network namespace, with containerd and the local test image) gets Pods
// with nodeName unset; the scheduler binds them and the worker's kubelet
// starts them. A watch started before the first create times each pod from
// the start of its create call to the first event that shows it Running and
// Ready — Kubernetes' pod startup SLI, which likewise excludes image pulls
// (the image is local here).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

	"synod/internal/launch"
)

// Worker benchmark constants.
const (
	// PodsNamespace holds every pod the benchmark creates.
	PodsNamespace = "bench-pods"
	// podsLabel marks the benchmark's pods, so the watch sees only them.
	podsLabel = "synod-bench"

	// GoalStartupP99 is the goal for 100 pods (Kubernetes' SLO
	// is 5 s at the 99th percentile).
	GoalStartupP99 = time.Second
)

// PodsOptions configures RunPods. Zero values take the defaults noted per
// field.
type PodsOptions struct {
	LaunchOptions // where and how to launch the cluster

	Pods    int // default 100
	Clients int // concurrent creators (default 10)
	// Rate spaces the creates to this many per second (default 0: as
	// fast as the clients go, one burst). Kubernetes' density tests
	// create pods at a steady rate the cluster can follow.
	Rate    float64
	Masters int // masters in the launched cluster (default 1)
	Workers int // workers in the launched cluster (default 1)

	// Timeout bounds the wait for every pod to run (default 5 minutes);
	// pods not running by then are reported as such.
	Timeout time.Duration
}

// PodsReport is the outcome of RunPods.
type PodsReport struct {
	Started time.Time
	Masters int
	Workers int
	Pods    int
	Clients int
	Rate    float64 // creates per second, 0 for one burst
	NumCPU  int
	Image   string

	NodesReady   time.Duration // cluster start → every worker Node Ready
	Running      int           // pods seen Running and Ready
	FirstRunning time.Duration // first create → first pod Running
	Elapsed      time.Duration // first create → last pod Running
	PodsPerSec   float64       // Running / Elapsed
	// Startup holds each running pod's create → Running latency, sorted.
	Startup []time.Duration
	Notes   []string
}

func (o PodsOptions) withDefaults() (PodsOptions, error) {
	if o.Pods == 0 {
		o.Pods = 100
	}
	if o.Clients == 0 {
		o.Clients = 10
	}
	if o.Masters == 0 {
		o.Masters = 1
	}
	if o.Workers == 0 {
		o.Workers = 1
	}
	if o.Pods < 1 || o.Clients < 1 || o.Masters < 1 || o.Workers < 1 || o.Rate < 0 {
		return o, errors.New("bench: pods, clients, masters and workers must be ≥ 1 and rate ≥ 0")
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	var err error
	o.LaunchOptions, err = o.LaunchOptions.withDefaults(2 * time.Minute)
	return o, err
}

// RunPods launches a cluster with workers (which needs root), waits until
// every worker's Node is Ready, creates the pods and waits until all run,
// deletes them and returns the report. The cluster is stopped and its
// temporary dir removed before it returns.
func RunPods(ctx context.Context, o PodsOptions) (_ *PodsReport, retErr error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &PodsReport{Started: time.Now(), Masters: o.Masters, Workers: o.Workers, Pods: o.Pods, Clients: o.Clients, Rate: o.Rate,
		NumCPU: runtime.NumCPU(), Image: launch.TestImage}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: the worker benchmark needs root (network namespaces, containerd)")
	}
	start := time.Now()
	c, stop, err := o.startCluster(ctx, "pods", fmt.Sprintf("%d master(s) and %d worker(s)", o.Masters, o.Workers), launch.Options{Masters: o.Masters, Workers: o.Workers})
	defer func() {
		if err := stop(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if err != nil {
		return rep, err
	}
	withLogs := func(err error) error { return c.withLogs(ctx, err) }
	b, err := newAPIBench(APIOptions{LaunchOptions: o.LaunchOptions}, c.Cluster)
	if err != nil {
		return rep, withLogs(err)
	}
	conns := &connSet{}
	defer conns.closeAll()
	clis := make([]*kubernetes.Clientset, o.Clients+1) // the last one watches
	for i := range clis {
		if clis[i], err = b.client(b.urls[i%len(b.urls)], conns); err != nil {
			return rep, withLogs(fmt.Errorf("bench: client: %w", err))
		}
	}
	if err := podsReady(ctx, o, clis[0]); err != nil {
		return rep, withLogs(err)
	}
	rep.NodesReady = time.Since(start)
	o.progressf("%d worker node(s) Ready %s after the start", o.Workers, rep.NodesReady.Round(time.Millisecond))
	runErr := podsRun(ctx, o, clis, rep)
	// Delete the pods even after a failure, so the workers drain quickly.
	if err := podsDelete(ctx, o, clis); err != nil && runErr == nil {
		runErr = err
	}
	return rep, withLogs(runErr)
}

// podsReady waits until the API answers, the namespace exists and every
// worker has registered a Ready Node.
func podsReady(ctx context.Context, o PodsOptions, cs *kubernetes.Clientset) error {
	rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	o.progressf("waiting for the namespace and %d Ready worker node(s)", o.Workers)
	var last error
	for {
		last = podsReadyOnce(rctx, o, cs)
		if last == nil {
			return nil
		}
		select {
		case <-rctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("bench: workers not ready within %s: %w", o.ReadyTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podsReadyOnce(ctx context.Context, o PodsOptions, cs *kubernetes.Clientset) error {
	octx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: PodsNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(octx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", PodsNamespace, err)
	}
	nodes, err := cs.CoreV1().Nodes().List(octx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	ready := 0
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready < o.Workers {
		return fmt.Errorf("%d of %d nodes Ready", ready, o.Workers)
	}
	return nil
}

// podsPod is the pod the benchmark creates: the local test image, sleeping,
// left for the scheduler to place.
func podsPod(name string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: PodsNamespace, Labels: map[string]string{"app": podsLabel}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{Name: "c", Image: launch.TestImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sleep", "3600"}}},
		},
	}
}

// podRunning reports whether a pod is Running with its Ready condition true.
func podRunning(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startupTracker pairs each pod's create start with the first watch event
// that shows it running. Either may come first (an event never precedes
// the create, but its handling can precede the creator's bookkeeping).
type startupTracker struct {
	mu      sync.Mutex
	created map[string]time.Time
	running map[string]time.Time
	want    int
	all     chan struct{} // closed once want pods ran
}

func newStartupTracker(want int) *startupTracker {
	return &startupTracker{created: map[string]time.Time{}, running: map[string]time.Time{}, want: want, all: make(chan struct{})}
}

func (t *startupTracker) create(name string, at time.Time) {
	t.mu.Lock()
	t.created[name] = at
	t.mu.Unlock()
}

func (t *startupTracker) run(name string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.running[name]; ok {
		return
	}
	t.running[name] = at
	if len(t.running) == t.want {
		close(t.all)
	}
}

// result returns the sorted create → Running latencies of the pods both
// created and seen running, and the first and last running times.
func (t *startupTracker) result() (lat []time.Duration, first, last time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, r := range t.running {
		c, ok := t.created[name]
		if !ok {
			continue
		}
		lat = append(lat, r.Sub(c))
		if first.IsZero() || r.Before(first) {
			first = r
		}
		if r.After(last) {
			last = r
		}
	}
	slices.Sort(lat)
	return lat, first, last
}

// watchPods feeds t from a watch of the benchmark's pods starting at rv,
// re-established from the last seen resource version if the server ends
// it, until ctx ends. A watch that fails is re-established too, at most
// watchRetries times in a row (a pod that ran meanwhile is then timed
// late, never early); then the error goes to errc.
func watchPods(ctx context.Context, cs *kubernetes.Clientset, rv string, t *startupTracker, errc chan<- error) {
	const watchRetries = 3
	failures := 0
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return true
		}
		if failures++; failures > watchRetries {
			errc <- fmt.Errorf("bench: watch pods: %w", err)
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
		return false
	}
	for ctx.Err() == nil {
		w, err := cs.CoreV1().Pods(PodsNamespace).Watch(ctx, metav1.ListOptions{
			LabelSelector: "app=" + podsLabel, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if fail(err) {
				return
			}
			continue
		}
		for ev := range w.ResultChan() {
			now := time.Now()
			if ev.Type == watch.Error {
				w.Stop()
				if fail(apierrors.FromObject(ev.Object)) {
					return
				}
				break
			}
			failures = 0
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			rv = p.ResourceVersion
			if (ev.Type == watch.Added || ev.Type == watch.Modified) && podRunning(p) {
				t.run(p.Name, now)
			}
		}
		w.Stop()
	}
}

// podsRun starts the watch, creates the pods with o.Clients clients and
// waits until every pod runs or o.Timeout passes.
func podsRun(ctx context.Context, o PodsOptions, clis []*kubernetes.Clientset, rep *PodsReport) error {
	watcher := clis[len(clis)-1]
	lctx, lcancel := context.WithTimeout(ctx, o.OpTimeout)
	list, err := watcher.CoreV1().Pods(PodsNamespace).List(lctx, metav1.ListOptions{LabelSelector: "app=" + podsLabel})
	lcancel()
	if err != nil {
		return fmt.Errorf("bench: list pods: %w", err)
	}
	t := newStartupTracker(o.Pods)
	wctx, wcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { watchPods(wctx, watcher, list.ResourceVersion, t, errc) })
	defer func() {
		wcancel()
		wg.Wait()
	}()

	pace := "in one burst"
	if o.Rate > 0 {
		pace = fmt.Sprintf("at %g/s", o.Rate)
	}
	o.progressf("creating %d pods (%s, sleep 3600) with %d clients %s", o.Pods, launch.TestImage, o.Clients, pace)
	var seq atomic.Int64
	begin := time.Now()
	d := drive(ctx, o.Clients, 0, o.Pods, o.OpTimeout, func(octx context.Context, i int) error {
		n := seq.Add(1)
		name := fmt.Sprintf("pod-%d", n)
		if o.Rate > 0 {
			// Pod n is due (n-1)/Rate seconds after the first.
			due := begin.Add(time.Duration(float64(n-1) / o.Rate * float64(time.Second)))
			select {
			case <-time.After(time.Until(due)):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		t.create(name, time.Now())
		_, err := clis[i].CoreV1().Pods(PodsNamespace).Create(octx, podsPod(name), metav1.CreateOptions{})
		return err
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.errors > 0 {
		return fmt.Errorf("bench: %d of %d pod creates failed, first: %w", d.errors, o.Pods, d.firstErr)
	}
	o.progressf("created %d pods in %s; waiting until they run", o.Pods, d.elapsed.Round(time.Millisecond))

	timeout := time.NewTimer(o.Timeout)
	defer timeout.Stop()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var failure error
	for waiting := true; waiting; {
		select {
		case <-t.all:
			waiting = false
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			failure, waiting = err, false
		case <-timeout.C:
			waiting = false
		case <-tick.C:
			t.mu.Lock()
			n := len(t.running)
			t.mu.Unlock()
			o.progressf("%d of %d pods running", n, o.Pods)
		}
	}
	lat, first, last := t.result()
	rep.Startup, rep.Running = lat, len(lat)
	if !first.IsZero() {
		rep.FirstRunning = first.Sub(begin)
		rep.Elapsed = last.Sub(begin)
		rep.PodsPerSec = float64(rep.Running) / rep.Elapsed.Seconds()
	}
	if failure != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("only %d of %d pods were seen running before the watch failed", rep.Running, o.Pods))
		return failure
	}
	if rep.Running < o.Pods {
		rep.Notes = append(rep.Notes, fmt.Sprintf("only %d of %d pods were seen running within %s", rep.Running, o.Pods, o.Timeout))
	}
	if rep.Running < o.Pods {
		return fmt.Errorf("bench: only %d of %d pods running within %s", rep.Running, o.Pods, o.Timeout)
	}
	p50, p99, maxLat := latencies(lat)
	o.progressf("%d pods running after %s: p50 %s, p99 %s, max %s", rep.Running, rep.Elapsed.Round(time.Millisecond),
		fmtMs(p50), fmtMs(p99), fmtMs(maxLat))
	return nil
}

// podsDelete deletes the benchmark's pods (grace period 0) and waits, up to
// a minute, until the API no longer has them, so the workers are idle when
// the cluster stops.
func podsDelete(ctx context.Context, o PodsOptions, clis []*kubernetes.Clientset) error {
	cs := clis[0]
	lctx, lcancel := context.WithTimeout(ctx, o.OpTimeout)
	list, err := cs.CoreV1().Pods(PodsNamespace).List(lctx, metav1.ListOptions{LabelSelector: "app=" + podsLabel})
	lcancel()
	if err != nil {
		return fmt.Errorf("bench: list pods to delete: %w", err)
	}
	o.progressf("deleting %d pods", len(list.Items))
	zero := int64(0)
	var next atomic.Int64
	d := drive(ctx, min(o.Clients, max(len(list.Items), 1)), 0, len(list.Items), o.OpTimeout, func(octx context.Context, i int) error {
		p := list.Items[next.Add(1)-1]
		err := clis[i].CoreV1().Pods(p.Namespace).Delete(octx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	if d.errors > 0 {
		return fmt.Errorf("bench: %d pod deletes failed, first: %w", d.errors, d.firstErr)
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	defer dcancel()
	for {
		octx, cancel := context.WithTimeout(dctx, o.OpTimeout)
		left, err := cs.CoreV1().Pods(PodsNamespace).List(octx, metav1.ListOptions{LabelSelector: "app=" + podsLabel})
		cancel()
		if err == nil && len(left.Items) == 0 {
			return nil
		}
		select {
		case <-dctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n := -1
			if left != nil {
				n = len(left.Items)
			}
			return fmt.Errorf("bench: %d pods still present a minute after their deletion (last error: %v)", n, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// workerLogTails is the end of every worker's log, for errors.
func workerLogTails(dir string, workers int) string {
	var b strings.Builder
	for i := 1; i <= workers; i++ {
		path := filepath.Join(dir, fmt.Sprintf("w%d.log", i))
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		lines = lines[max(0, len(lines)-15):]
		fmt.Fprintf(&b, "\n--- %s (last %d lines) ---\n%s", path, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Goal reports whether every pod ran and the p99 startup latency is below
// GoalStartupP99.
func (r *PodsReport) Goal() bool {
	return r.Running == r.Pods && r.Running > 0 && Percentile(r.Startup, 99) < GoalStartupP99
}

// GoalLine is the one-line verdict on the goal.
func (r *PodsReport) GoalLine() string {
	goal := "Goal: p99 pod startup < 1 s (Kubernetes' SLO: 5 s)"
	switch {
	case r.Running < r.Pods:
		return goal + fmt.Sprintf(": NOT met (only %d of %d pods ran).", r.Running, r.Pods)
	case r.Goal():
		return goal + ": met."
	default:
		return goal + ": NOT met."
	}
}

// Markdown renders the report as a table and the goal line.
func (r *PodsReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "synod bench pods, %s: %d master(s) and %d worker(s) (containerd + runc, each worker in its own network namespace) on one machine, %d CPUs; %s pods (%s, `sleep 3600`, local image, nodeName unset) created by %d clients %s; startup = create call → first watch event with the pod Running and Ready.\n\n",
		r.Started.Format("2006-01-02"), r.Masters, r.Workers, r.NumCPU, thousands(r.Pods), r.Image, r.Clients, r.pace())
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "> Note: %s\n\n", n)
	}
	head := []string{"pods", "running", "p50", "p90", "p99", "max", "first running", "all running", "pods/s"}
	right := []bool{true, true, true, true, true, true, true, true, true}
	var p50, p90, p99, maxLat time.Duration
	if len(r.Startup) > 0 {
		p50, p90, p99, maxLat = Percentile(r.Startup, 50), Percentile(r.Startup, 90), Percentile(r.Startup, 99), r.Startup[len(r.Startup)-1]
	}
	row := []string{strconv.Itoa(r.Pods), strconv.Itoa(r.Running), fmtMs(p50), fmtMs(p90), fmtMs(p99), fmtMs(maxLat),
		fmtMs(r.FirstRunning), fmtMs(r.Elapsed), fmt.Sprintf("%.1f", r.PodsPerSec)}
	writeTable(&b, head, right, [][]string{row})
	b.WriteString("\n" + r.GoalLine() + "\n")
	b.WriteString("\nProxy sync (1,000 services × 10 endpoints): `go test -run '^$' -bench Sync -benchtime 3x ./node/proxy` (see the README).\n")
	return b.String()
}

func (r *PodsReport) pace() string {
	if r.Rate > 0 {
		return fmt.Sprintf("at %g pods/s", r.Rate)
	}
	return "in one burst"
}

// JSON renders the report for machines: durations in milliseconds.
func (r *PodsReport) JSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var p50, p90, p99, maxLat time.Duration
	if len(r.Startup) > 0 {
		p50, p90, p99, maxLat = Percentile(r.Startup, 50), Percentile(r.Startup, 90), Percentile(r.Startup, 99), r.Startup[len(r.Startup)-1]
	}
	out := struct {
		Started        time.Time `json:"started"`
		Masters        int       `json:"masters"`
		Workers        int       `json:"workers"`
		Pods           int       `json:"pods"`
		Clients        int       `json:"clients"`
		Rate           float64   `json:"rate"`
		NumCPU         int       `json:"num_cpu"`
		Image          string    `json:"image"`
		NodesReadyMs   float64   `json:"nodes_ready_ms"`
		Running        int       `json:"running"`
		P50Ms          float64   `json:"startup_p50_ms"`
		P90Ms          float64   `json:"startup_p90_ms"`
		P99Ms          float64   `json:"startup_p99_ms"`
		MaxMs          float64   `json:"startup_max_ms"`
		FirstRunningMs float64   `json:"first_running_ms"`
		ElapsedMs      float64   `json:"all_running_ms"`
		PodsPerSec     float64   `json:"pods_per_sec"`
		GoalP99Ms      float64   `json:"goal_p99_ms"`
		GoalMet        bool      `json:"goal_met"`
		Notes          []string  `json:"notes,omitempty"`
	}{
		Started: r.Started, Masters: r.Masters, Workers: r.Workers, Pods: r.Pods, Clients: r.Clients, Rate: r.Rate, NumCPU: r.NumCPU, Image: r.Image,
		NodesReadyMs: ms(r.NodesReady), Running: r.Running, P50Ms: ms(p50), P90Ms: ms(p90), P99Ms: ms(p99), MaxMs: ms(maxLat),
		FirstRunningMs: ms(r.FirstRunning), ElapsedMs: ms(r.Elapsed), PodsPerSec: r.PodsPerSec,
		GoalP99Ms: ms(GoalStartupP99), GoalMet: r.Goal(), Notes: r.Notes,
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
