package bench

// The scheduler benchmark (`synod bench scheduler`): Nodes and pending Pods
// are created through the API of a launched cluster that runs no scheduler
// and no controllers, then synod's scheduler runs in-process against it (as
// a master's scheduler term does) until every pod is bound; a watcher on
// its own connection times the bindings.

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"synod/components/scheduler"
	"synod/internal/launch"
)

// Scheduler benchmark constants. Nodes and pods are those of Kubernetes'
// scheduler_perf defaults (node-default.yaml, pod-default.yaml).
const (
	SchedulerNamespace = "bench-scheduler"
	SchedulerNodeCPU   = "4"
	SchedulerNodeMem   = "32Gi"
	SchedulerNodePods  = 110
	SchedulerPodCPU    = "100m"
	SchedulerPodMem    = "500Mi"

	// GoalPodsPerSec is the goal for 1,000 nodes and 10,000 pods.
	GoalPodsPerSec = 1000
)

// SchedulerOptions configures RunScheduler. Zero values take the defaults
// noted per field.
type SchedulerOptions struct {
	LaunchOptions // where and how to launch the cluster

	Nodes   int // default 1000
	Pods    int // default 10000
	Masters int // masters in the launched cluster (default 1)
	Clients int // concurrent creators of nodes and pods (default 32)

	// BindConcurrency is the scheduler's bindings in flight (default
	// scheduler.DefaultBindConcurrency).
	BindConcurrency int
	// NoEvents drops the scheduler's events instead of writing them to
	// the API (one Scheduled event per pod), to see what they cost.
	NoEvents bool

	ExtraArgs []string // more `synod master` flags

	// Timeout bounds the scheduling phase (default 5 minutes); pods not
	// bound by then are reported as such.
	Timeout time.Duration
}

// SchedulerReport is the outcome of RunScheduler.
type SchedulerReport struct {
	Started time.Time
	Masters int
	Nodes   int
	Pods    int
	NumCPU  int

	CreatePodsPerSec float64       // while setting up (pods created through the API)
	Sync             time.Duration // scheduler start → its informers have listed everything
	FirstBind        time.Duration // scheduler start → first pod seen bound
	Elapsed          time.Duration // scheduler start → last pod seen bound
	Bound            int           // pods seen bound (Pods when complete)
	PodsPerSec       float64       // Bound / Elapsed
	SteadyPodsPerSec float64       // pods bound after the first / (last − first bind)
	Events           int           // events the scheduler wrote (one Scheduled per pod, and more)
	EventsLag        time.Duration // last binding → its events written
	Notes            []string
}

func (o SchedulerOptions) withDefaults() (SchedulerOptions, error) {
	if o.Nodes == 0 {
		o.Nodes = 1000
	}
	if o.Pods == 0 {
		o.Pods = 10000
	}
	if o.Masters == 0 {
		o.Masters = 1
	}
	if o.Clients == 0 {
		o.Clients = 32
	}
	if o.Nodes < 1 || o.Pods < 1 || o.Masters < 1 || o.Clients < 1 {
		return o, fmt.Errorf("bench: nodes, pods, masters and clients must be ≥ 1")
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	var err error
	o.LaunchOptions, err = o.LaunchOptions.withDefaults(defaultReadyTimeout)
	return o, err
}

// RunScheduler launches a cluster without scheduler and controllers,
// creates the nodes and pods, runs the scheduler until every pod is bound
// and returns the report. The cluster is stopped and its temporary dir
// removed before it returns.
func RunScheduler(ctx context.Context, o SchedulerOptions) (_ *SchedulerReport, retErr error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &SchedulerReport{Started: time.Now(), Masters: o.Masters, Nodes: o.Nodes, Pods: o.Pods, NumCPU: runtime.NumCPU()}
	c, stop, err := o.startCluster(ctx, "scheduler", fmt.Sprintf("%d master(s) without scheduler and controllers", o.Masters), launch.Options{Masters: o.Masters, ExtraArgs: append([]string{"--scheduler=false", "--controllers=-*"}, o.ExtraArgs...)})
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
	if err := b.ready(ctx); err != nil {
		return rep, withLogs(err)
	}
	conns := &connSet{}
	defer conns.closeAll()
	if err := schedSetup(ctx, o, b, conns, rep); err != nil {
		return rep, withLogs(err)
	}
	if err := schedRun(ctx, o, b, conns, rep); err != nil {
		return rep, withLogs(err)
	}
	return rep, nil
}

// schedSetup creates the namespace, the nodes (Ready, with their status, as
// a kubelet registers) and the pending pods, with o.Clients clients spread
// over the masters.
func schedSetup(ctx context.Context, o SchedulerOptions, b *apiBench, conns *connSet, rep *SchedulerReport) error {
	clis := make([]*kubernetes.Clientset, o.Clients)
	for i := range clis {
		cs, err := b.client(b.urls[i%len(b.urls)], conns)
		if err != nil {
			return err
		}
		clis[i] = cs
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SchedulerNamespace}}
	nctx, cancel := context.WithTimeout(ctx, o.OpTimeout)
	_, err := clis[0].CoreV1().Namespaces().Create(nctx, ns, metav1.CreateOptions{})
	cancel()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("bench: create namespace %s: %w", SchedulerNamespace, err)
	}

	var seq atomic.Int64
	o.progressf("creating %d nodes", o.Nodes)
	d := drive(ctx, o.Clients, 0, o.Nodes, o.OpTimeout, func(octx context.Context, i int) error {
		_, err := clis[i].CoreV1().Nodes().Create(octx, schedNode(fmt.Sprintf("node-%d", seq.Add(1))), metav1.CreateOptions{})
		return err
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.errors > 0 {
		return fmt.Errorf("bench: %d of %d node creates failed, first: %v", d.errors, o.Nodes, d.firstErr)
	}

	seq.Store(0)
	o.progressf("creating %d pending pods", o.Pods)
	d = drive(ctx, o.Clients, 0, o.Pods, o.OpTimeout, func(octx context.Context, i int) error {
		_, err := clis[i].CoreV1().Pods(SchedulerNamespace).Create(octx, schedPod(fmt.Sprintf("pod-%d", seq.Add(1))), metav1.CreateOptions{})
		return err
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.errors > 0 {
		return fmt.Errorf("bench: %d of %d pod creates failed, first: %v", d.errors, o.Pods, d.firstErr)
	}
	rep.CreatePodsPerSec = float64(o.Pods) / d.elapsed.Seconds()
	o.progressf("created %d pods at %.0f/s", o.Pods, rep.CreatePodsPerSec)
	return nil
}

func schedNode(name string) *corev1.Node {
	rl := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(SchedulerNodeCPU),
		corev1.ResourceMemory: resource.MustParse(SchedulerNodeMem),
		corev1.ResourcePods:   *resource.NewQuantity(SchedulerNodePods, resource.DecimalSI),
	}
	now := metav1.Now()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{
			Capacity: rl, Allocatable: rl,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: now, LastTransitionTime: now}},
		},
	}
}

func schedPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: SchedulerNamespace},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: APIPodImage,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(SchedulerPodCPU),
				corev1.ResourceMemory: resource.MustParse(SchedulerPodMem),
			}}}}},
	}
}

// countingSink counts the benchmark pods' Scheduled events written to the API.
type countingSink struct {
	record.EventSink
	created atomic.Int64
	last    atomic.Int64 // unix nanos of the last write
}

func (s *countingSink) Create(ev *corev1.Event) (*corev1.Event, error) {
	out, err := s.EventSink.Create(ev)
	if err == nil && ev.InvolvedObject.Namespace == SchedulerNamespace && ev.Reason == "Scheduled" {
		s.created.Add(1)
		s.last.Store(time.Now().UnixNano())
	}
	return out, err
}

// bindWatch counts the benchmark's pods as they become bound.
type bindWatch struct {
	mu    sync.Mutex
	bound map[string]bool
	first time.Time
	last  time.Time
	all   chan struct{} // closed once want pods are bound
	want  int
}

func (w *bindWatch) seen(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" || pod.Namespace != SchedulerNamespace {
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bound[pod.Name] {
		return
	}
	w.bound[pod.Name] = true
	if w.first.IsZero() {
		w.first = now
	}
	w.last = now
	if len(w.bound) == w.want {
		close(w.all)
	}
}

// schedRun starts the scheduler and waits until every pod is bound (or
// o.Timeout). The bindings are timed as they arrive through the watch of
// the scheduler's own pod informer (a second watch would double what the
// API server streams per binding, and a master's scheduler has only one).
func schedRun(ctx context.Context, o SchedulerOptions, b *apiBench, conns *connSet, rep *SchedulerReport) error {
	// The scheduler, as a master's term runs it: its own client on the
	// first master, no client-side rate limit, events written to the API.
	scs, err := b.client(b.urls[0], conns)
	if err != nil {
		return err
	}
	events := record.NewBroadcaster(record.WithContext(ctx))
	sink := &countingSink{EventSink: &typedcorev1.EventSinkImpl{Interface: scs.CoreV1().Events("")}}
	if !o.NoEvents {
		events.StartRecordingToSink(sink)
	}
	defer events.Shutdown()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	factory := informers.NewSharedInformerFactory(scs, 0)
	s, err := scheduler.New(scheduler.Config{
		Client:          scs,
		Informers:       factory,
		Recorder:        events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: scheduler.DefaultSchedulerName}),
		Logger:          o.Logger,
		BindConcurrency: o.BindConcurrency,
	})
	if err != nil {
		return err
	}
	w := &bindWatch{bound: map[string]bool{}, all: make(chan struct{}), want: o.Pods}
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.seen,
		UpdateFunc: func(_, obj any) { w.seen(obj) },
	}); err != nil {
		return err
	}
	o.progressf("starting the scheduler")
	start := time.Now()
	factory.Start(sctx.Done())
	done := make(chan struct{})
	defer func() {
		scancel()
		<-done
		factory.Shutdown()
	}()
	synced := factory.WaitForCacheSync(sctx.Done())
	rep.Sync = time.Since(start)
	go func() {
		defer close(done)
		for typ, ok := range synced {
			if !ok {
				o.progressf("scheduler informer for %v did not sync", typ)
				return
			}
		}
		s.Run(sctx)
	}()

	timeout := time.NewTimer(o.Timeout)
	defer timeout.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-w.all:
			waiting = false
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			rep.Notes = append(rep.Notes, fmt.Sprintf("timed out after %s", o.Timeout))
			waiting = false
		case <-tick.C:
			w.mu.Lock()
			n := len(w.bound)
			w.mu.Unlock()
			o.progressf("%6.1fs: %d/%d pods bound", time.Since(start).Seconds(), n, o.Pods)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	rep.Bound = len(w.bound)
	if rep.Bound == 0 {
		return fmt.Errorf("bench: no pod was bound within %s", o.Timeout)
	}
	rep.FirstBind = w.first.Sub(start)
	rep.Elapsed = w.last.Sub(start)
	rep.PodsPerSec = float64(rep.Bound) / rep.Elapsed.Seconds()
	if steady := w.last.Sub(w.first); rep.Bound > 1 && steady > 0 {
		rep.SteadyPodsPerSec = float64(rep.Bound-1) / steady.Seconds()
	}
	// The Scheduled events trail the bindings: client-go writes them one
	// at a time, and drops what does not fit its 1,000-event queue. Wait
	// (bounded) until the writer has been idle for a second, so the run
	// ends with the API quiet, and report what was written.
	if !o.NoEvents {
		deadline := time.Now().Add(30 * time.Second)
		for ctx.Err() == nil && time.Now().Before(deadline) &&
			(sink.created.Load() < int64(rep.Bound)) && time.Since(time.Unix(0, sink.last.Load())) < time.Second {
			time.Sleep(20 * time.Millisecond)
		}
		rep.Events = int(sink.created.Load())
		if last := sink.last.Load(); last != 0 {
			rep.EventsLag = time.Unix(0, last).Sub(w.last)
		}
	}
	if st := s.Stats(); st.Unschedulable > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d pods were unschedulable at the end", st.Unschedulable))
	}
	o.progressf("%d pods bound in %s: %.0f pods/s", rep.Bound, rep.Elapsed.Round(time.Millisecond), rep.PodsPerSec)
	return nil
}

// GoalLine is the one-line verdict on the goal.
func (r *SchedulerReport) GoalLine() string {
	goal := fmt.Sprintf("Goal: >= %s pods/s", thousands(GoalPodsPerSec))
	switch {
	case r.Bound < r.Pods:
		return goal + fmt.Sprintf(": NOT met (only %d of %d pods bound).", r.Bound, r.Pods)
	case r.PodsPerSec >= GoalPodsPerSec:
		return goal + ": met."
	default:
		return goal + ": NOT met."
	}
}

// Markdown renders the report as a table and the goal line.
func (r *SchedulerReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "synod bench scheduler, %s: %d-master cluster on loopback without scheduler and controllers, %d CPUs; %s nodes (%s cpu, %s, %d pods each) and %s pending pods (%s cpu, %s) created through the API, then synod's scheduler in-process until every pod is bound (times from the scheduler's start, including its informers' initial list).\n\n",
		r.Started.Format("2006-01-02"), r.Masters, r.NumCPU, thousands(r.Nodes), SchedulerNodeCPU, SchedulerNodeMem, SchedulerNodePods,
		thousands(r.Pods), SchedulerPodCPU, SchedulerPodMem)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "> Note: %s\n\n", n)
	}
	if r.Events > 0 {
		fmt.Fprintf(&b, "The scheduler wrote %s of the %s Scheduled events, the last %s after the last binding (client-go's event writer sends one at a time and drops what exceeds its 1,000-event queue).\n\n",
			thousands(r.Events), thousands(r.Bound), fmtMs(r.EventsLag))
	}
	head := []string{"nodes", "pods", "bound", "informer sync", "first bind", "all bound", "pods/s", "pods/s after first bind"}
	right := []bool{true, true, true, true, true, true, true, true}
	row := []string{strconv.Itoa(r.Nodes), strconv.Itoa(r.Pods), strconv.Itoa(r.Bound), fmtMs(r.Sync), fmtMs(r.FirstBind),
		fmtMs(r.Elapsed), fmt.Sprintf("%.0f", r.PodsPerSec), fmt.Sprintf("%.0f", r.SteadyPodsPerSec)}
	writeTable(&b, head, right, [][]string{row})
	b.WriteString("\n" + r.GoalLine() + "\n")
	return b.String()
}

// JSON renders the report for machines: durations in milliseconds.
func (r *SchedulerReport) JSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	out := struct {
		Started          time.Time `json:"started"`
		Masters          int       `json:"masters"`
		Nodes            int       `json:"nodes"`
		Pods             int       `json:"pods"`
		NumCPU           int       `json:"num_cpu"`
		CreatePodsPerSec float64   `json:"create_pods_per_sec"`
		SyncMs           float64   `json:"informer_sync_ms"`
		FirstBindMs      float64   `json:"first_bind_ms"`
		ElapsedMs        float64   `json:"all_bound_ms"`
		Bound            int       `json:"bound"`
		PodsPerSec       float64   `json:"pods_per_sec"`
		SteadyPodsPerSec float64   `json:"pods_per_sec_after_first_bind"`
		Events           int       `json:"events"`
		EventsLagMs      float64   `json:"events_lag_ms"`
		GoalPodsPerSec   int       `json:"goal_pods_per_sec"`
		GoalMet          bool      `json:"goal_met"`
		Notes            []string  `json:"notes,omitempty"`
	}{
		Started: r.Started, Masters: r.Masters, Nodes: r.Nodes, Pods: r.Pods, NumCPU: r.NumCPU,
		CreatePodsPerSec: r.CreatePodsPerSec, SyncMs: ms(r.Sync), FirstBindMs: ms(r.FirstBind), ElapsedMs: ms(r.Elapsed),
		Bound: r.Bound, PodsPerSec: r.PodsPerSec, SteadyPodsPerSec: r.SteadyPodsPerSec, Events: r.Events, EventsLagMs: ms(r.EventsLag),
		GoalPodsPerSec: GoalPodsPerSec, GoalMet: r.Bound == r.Pods && r.PodsPerSec >= GoalPodsPerSec, Notes: r.Notes,
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
