package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// DefaultSchedulerName is spec.schedulerName of the pods this scheduler takes.
const DefaultSchedulerName = "default-scheduler"

// Defaults of the Config knobs.
const (
	DefaultBindConcurrency = 32
	DefaultInitialBackoff  = time.Second      // kube-scheduler's podInitialBackoffSeconds
	DefaultMaxBackoff      = 10 * time.Second // kube-scheduler's podMaxBackoffSeconds
)

// Config is what a term of the scheduler is built from.
type Config struct {
	Client        kubernetes.Interface
	Informers     informers.SharedInformerFactory // started by the caller after New
	Recorder      record.EventRecorder            // nil: no events
	Logger        *slog.Logger
	SchedulerName string // default DefaultSchedulerName

	// BindConcurrency bounds the bindings and status updates in flight;
	// the next pods are scheduled while they run (default 32).
	BindConcurrency int
	// Parallelism is how many goroutines filter the nodes of a large
	// cluster for one pod (default GOMAXPROCS).
	Parallelism int
	// PercentageOfNodesToScore is kube-scheduler's knob: 0 is its adaptive
	// default (all nodes up to 100, then from 50% down), 100 is every node.
	PercentageOfNodesToScore int
	// InitialBackoff and MaxBackoff bound the retry delay of a pod that fit
	// nowhere (default 1s doubling to 10s).
	InitialBackoff, MaxBackoff time.Duration
}

// Scheduler assigns pending pods to nodes.
type Scheduler struct {
	cfg       Config
	log       *slog.Logger
	recorder  record.EventRecorder
	podLister corelisters.PodLister
	synced    []cache.InformerSynced

	cache *schedCache
	queue *schedQueue

	// Bindings and status updates run in the background, at most
	// BindConcurrency at a time; Run waits for them before it returns.
	slots chan struct{}
	async sync.WaitGroup

	scheduled atomic.Int64 // successful bindings, for Stats

	// Owned by the scheduling goroutine.
	rnd       *rand.Rand
	nextStart int
	results   []filterResult
	feasible  []*nodeInfo
	statuses  []*status
	raw       []rawScores
	totals    []int64
}

// filterResult is one node's filter outcome in a cycle.
type filterResult struct {
	done bool
	st   *status // nil: the pod fits
}

// New registers the informers the scheduler needs; call Run after the
// caller has started cfg.Informers.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Client == nil || cfg.Informers == nil {
		return nil, errors.New("scheduler: Config needs Client and Informers")
	}
	if cfg.SchedulerName == "" {
		cfg.SchedulerName = DefaultSchedulerName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BindConcurrency <= 0 {
		cfg.BindConcurrency = DefaultBindConcurrency
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = runtime.GOMAXPROCS(0)
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = DefaultInitialBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	s := &Scheduler{
		cfg:      cfg,
		log:      cfg.Logger.With("scheduler", cfg.SchedulerName),
		recorder: cfg.Recorder,
		cache:    newSchedCache(),
		queue:    newSchedQueue(cfg.InitialBackoff, cfg.MaxBackoff),
		slots:    make(chan struct{}, cfg.BindConcurrency),
		rnd:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed)),
	}
	if s.recorder == nil {
		s.recorder = &record.FakeRecorder{} // nil Events channel: drops
	}
	pods := cfg.Informers.Core().V1().Pods()
	nodes := cfg.Informers.Core().V1().Nodes()
	s.podLister = pods.Lister()
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.podAdded,
		UpdateFunc: s.podUpdated,
		DeleteFunc: s.podDeleted,
	}); err != nil {
		return nil, fmt.Errorf("scheduler: pod informer: %w", err)
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.nodeAdded,
		UpdateFunc: s.nodeUpdated,
		DeleteFunc: s.nodeDeleted,
	}); err != nil {
		return nil, fmt.Errorf("scheduler: node informer: %w", err)
	}
	s.synced = []cache.InformerSynced{pods.Informer().HasSynced, nodes.Informer().HasSynced}
	return s, nil
}

// Run schedules until ctx ends, then waits for the bindings in flight. A
// Scheduler runs once (a term of leadership builds a new one).
func (s *Scheduler) Run(ctx context.Context) {
	defer s.async.Wait()
	defer s.queue.wq.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return
	}
	s.log.Info("scheduler started")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s.scheduleOne(ctx) {
		}
	}()
	<-ctx.Done()
	s.queue.wq.ShutDown()
	<-done
	s.log.Info("scheduler stopped")
}

// Stats is a snapshot of the scheduler's state.
type Stats struct {
	Nodes         int   // schedulable candidates: nodes known through the informer
	Unschedulable int   // pods waiting for a backoff or a cluster change
	Scheduled     int64 // pods this scheduler has bound
}

// Stats returns the scheduler's current counts.
func (s *Scheduler) Stats() Stats {
	s.cache.mu.Lock()
	nodes := len(s.cache.list)
	s.cache.mu.Unlock()
	return Stats{Nodes: nodes, Unschedulable: s.queue.pending(), Scheduled: s.scheduled.Load()}
}

// responsible: an unassigned, live pod for this scheduler whose
// scheduling gates are all removed.
func (s *Scheduler) responsible(pod *v1.Pod) bool {
	name := pod.Spec.SchedulerName
	if name == "" {
		name = DefaultSchedulerName
	}
	return pod.Spec.NodeName == "" && name == s.cfg.SchedulerName && pod.DeletionTimestamp == nil &&
		!isTerminal(pod) && len(pod.Spec.SchedulingGates) == 0
}

func podKey(pod *v1.Pod) string { return pod.Namespace + "/" + pod.Name }

// Pod events: assigned pods feed the cache, pending ones the queue.

func (s *Scheduler) podAdded(obj any) {
	pod := obj.(*v1.Pod)
	if pod.Spec.NodeName != "" {
		s.cache.setPod(pod)
		return
	}
	if s.responsible(pod) {
		s.queue.add(podKey(pod))
	}
}

func (s *Scheduler) podUpdated(oldObj, newObj any) {
	old, pod := oldObj.(*v1.Pod), newObj.(*v1.Pod)
	if pod.Spec.NodeName != "" {
		if node := s.cache.setPod(pod); node != "" {
			s.retryFitting(node)
		}
		if old.Spec.NodeName == "" {
			s.queue.forget(podKey(pod))
		}
		return
	}
	if !s.responsible(pod) {
		// Deleted, finished or handed to another scheduler while pending.
		s.queue.forget(podKey(pod))
		return
	}
	// Our own status writes (PodScheduled=False) must not retry the pod;
	// a change of what it asks for (or of its gates, now all gone) must.
	if !s.responsible(old) || !equality.Semantic.DeepEqual(old.Spec, pod.Spec) ||
		!maps.Equal(old.Labels, pod.Labels) || !maps.Equal(old.Annotations, pod.Annotations) {
		s.queue.add(podKey(pod))
	}
}

func (s *Scheduler) podDeleted(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if pod, ok = tomb.Obj.(*v1.Pod); !ok {
			return
		}
	}
	if node := s.cache.removePod(pod.UID); node != "" {
		s.retryFitting(node)
	}
	s.queue.forget(podKey(pod))
}

// Node events: a new node, or a change that may admit more pods, retries
// at once the waiting pods that now fit that node.

func (s *Scheduler) nodeAdded(obj any) {
	node := obj.(*v1.Node)
	s.cache.setNode(node)
	s.retryFitting(node.Name)
}

func (s *Scheduler) nodeUpdated(oldObj, newObj any) {
	old, node := oldObj.(*v1.Node), newObj.(*v1.Node)
	s.cache.setNode(node)
	if nodeSchedulingChanged(old, node) {
		s.retryFitting(node.Name)
	}
}

// retryFitting queues now the pods waiting for a backoff that pass the
// filters on the node that changed: the change cannot help the others, and
// retrying every pending pod on every node event would flood the API with
// their failures (kube-scheduler's queueing hints make the same cut).
func (s *Scheduler) retryFitting(name string) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	ni := s.cache.nodes[name]
	if ni == nil || ni.node == nil {
		return
	}
	s.queue.moveIf(func(p *podSchedInfo) bool { return filter(p, ni) == nil })
}

func (s *Scheduler) nodeDeleted(obj any) {
	node, ok := obj.(*v1.Node)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if node, ok = tomb.Obj.(*v1.Node); !ok {
			return
		}
	}
	s.cache.removeNode(node.Name)
}

// nodeSchedulingChanged ignores heartbeats: only what a filter reads counts.
func nodeSchedulingChanged(old, node *v1.Node) bool {
	return old.Spec.Unschedulable != node.Spec.Unschedulable ||
		!equality.Semantic.DeepEqual(old.Spec.Taints, node.Spec.Taints) ||
		!maps.Equal(old.Labels, node.Labels) ||
		!equality.Semantic.DeepEqual(old.Status.Allocatable, node.Status.Allocatable) ||
		notReadyTaintKey(old) != notReadyTaintKey(node)
}

// scheduleOne takes one pod from the queue and schedules it; false once the
// queue is shut down or ctx has ended.
func (s *Scheduler) scheduleOne(ctx context.Context) bool {
	key, quit := s.queue.wq.Get()
	if quit {
		return false
	}
	defer s.queue.wq.Done(key)
	if ctx.Err() != nil {
		return false
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		s.queue.forget(key)
		return true
	}
	pod, err := s.podLister.Pods(ns).Get(name)
	if err != nil || !s.responsible(pod) {
		s.queue.forget(key)
		return true
	}
	if s.cache.isAssumed(pod.UID) {
		return true // its binding is in flight
	}
	s.schedulePod(ctx, key, pod)
	return true
}

// errNoNodes is the outcome of a cycle with no node at all.
var errNoNodes = errors.New(MessageNoNodes)

// schedulePod runs one scheduling cycle: filter, score, assume, and bind in
// the background.
func (s *Scheduler) schedulePod(ctx context.Context, key string, pod *v1.Pod) {
	p := newPodSchedInfo(pod)
	s.cache.mu.Lock()
	node, err := s.findNode(p)
	if node != nil {
		s.cache.assumeLocked(p.podInfo, node.name)
	}
	s.cache.mu.Unlock()
	if err != nil {
		s.unschedulable(ctx, key, p, err.Error())
		return
	}
	s.queue.forget(key)
	s.background(ctx, func() { s.bind(ctx, key, p.podInfo, node.name) })
}

// background runs f in a bounded goroutine; it waits for a free slot, so a
// slow API slows the scheduling loop down instead of piling up goroutines.
func (s *Scheduler) background(ctx context.Context, f func()) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		f() // ends at once: every call in f carries ctx
		return
	}
	s.async.Add(1)
	go func() {
		defer s.async.Done()
		defer func() { <-s.slots }()
		f()
	}()
}

// findNode filters the nodes (a share of them in a large cluster, starting
// where the last cycle stopped), scores the feasible ones and returns the
// best, ties broken at random. The caller holds the cache lock.
func (s *Scheduler) findNode(p *podSchedInfo) (*nodeInfo, error) {
	list := s.cache.list
	n := len(list)
	if n == 0 {
		return nil, errNoNodes
	}
	want := numFeasibleNodesToFind(n, s.cfg.PercentageOfNodesToScore)
	start := s.nextStart % n
	s.filterAll(p, list, start, want)

	// Collect in walking order, up to want feasible nodes.
	s.feasible = s.feasible[:0]
	s.statuses = s.statuses[:0]
	processed := 0
	for i := 0; i < n && len(s.feasible) < want; i++ {
		r := &s.results[(start+i)%n]
		if !r.done {
			break // the parallel walk stopped before this node
		}
		processed++
		if r.st == nil {
			s.feasible = append(s.feasible, list[(start+i)%n])
		} else {
			s.statuses = append(s.statuses, r.st)
		}
	}
	s.nextStart = (start + processed) % n
	if len(s.feasible) == 0 {
		return nil, errors.New(fitMessage(n, s.statuses, p.preemptionPolicyNever))
	}
	if len(s.feasible) == 1 {
		return s.feasible[0], nil
	}
	s.raw = s.raw[:0]
	for _, ni := range s.feasible {
		s.raw = append(s.raw, score(p, ni))
	}
	if cap(s.totals) < len(s.raw) {
		s.totals = make([]int64, len(s.raw))
	}
	s.totals = s.totals[:len(s.raw)]
	totals(s.raw, s.totals)
	// Reservoir sampling over the best: a uniform pick among equals.
	best, ties := 0, 0
	for i, t := range s.totals {
		switch {
		case t > s.totals[best]:
			best, ties = i, 1
		case t == s.totals[best]:
			ties++
			if s.rnd.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return s.feasible[best], nil
}

// parallelThreshold is the cluster size from which filtering is spread
// over goroutines: below it, waking other threads costs more than it saves
// (BenchmarkFindNode: 1,000 nodes filter in ~30 µs on one core, ~50 µs
// on two).
const parallelThreshold = 4096

// filterAll fills s.results for the nodes walked from start, stopping once
// want nodes fit. Large clusters are filtered in chunks by Parallelism
// goroutines, which may overshoot want a little (the extra is ignored).
func (s *Scheduler) filterAll(p *podSchedInfo, list []*nodeInfo, start, want int) {
	n := len(list)
	if cap(s.results) < n {
		s.results = make([]filterResult, n)
	}
	s.results = s.results[:n]
	clear(s.results)
	if s.cfg.Parallelism <= 1 || n < parallelThreshold {
		found := 0
		for i := 0; i < n && found < want; i++ {
			j := (start + i) % n
			st := filter(p, list[j])
			s.results[j] = filterResult{done: true, st: st}
			if st == nil {
				found++
			}
		}
		return
	}
	const chunk = 64
	var next, found atomic.Int64
	var wg sync.WaitGroup
	for range s.cfg.Parallelism {
		wg.Go(func() {
			for found.Load() < int64(want) {
				lo := int(next.Add(1)-1) * chunk
				if lo >= n {
					return
				}
				fits := 0
				for i := lo; i < min(lo+chunk, n); i++ {
					j := (start + i) % n
					st := filter(p, list[j])
					s.results[j] = filterResult{done: true, st: st}
					if st == nil {
						fits++
					}
				}
				found.Add(int64(fits)) // once per chunk: a shared counter bounces between cores
			}
		})
	}
	wg.Wait()
}

// bind posts the binding; on failure the assumption is dropped and the pod
// retried after a backoff, unless it is gone or someone else bound it.
func (s *Scheduler) bind(ctx context.Context, key string, p *podInfo, node string) {
	pod := p.pod
	err := s.cfg.Client.CoreV1().Pods(pod.Namespace).Bind(ctx, &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     v1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err == nil {
		s.scheduled.Add(1)
		s.recorder.Eventf(pod, v1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node)
		return
	}
	if node := s.cache.forget(pod.UID); node != "" {
		s.retryFitting(node) // what it held is free again
	}
	switch {
	case ctx.Err() != nil:
		return
	case apierrors.IsNotFound(err):
		return
	case apierrors.IsConflict(err):
		// Already bound (by another scheduler, or an earlier term of
		// this one) or being deleted: the informer tells which. Look
		// again after a backoff in case it is neither.
		s.log.Debug("binding conflict", "pod", key, "node", node, "err", err)
		s.queue.backoff(key, nil)
		return
	}
	s.log.Warn("binding failed", "pod", key, "node", node, "err", err)
	s.recorder.Eventf(pod, v1.EventTypeWarning, "FailedScheduling", "Binding rejected: %v", err)
	s.queue.backoff(key, nil)
}

// unschedulable reports a pod that fit nowhere, as kube-scheduler does: a
// FailedScheduling event and the PodScheduled=False condition with reason
// Unschedulable, and the pod waits for a backoff or a cluster change.
func (s *Scheduler) unschedulable(ctx context.Context, key string, p *podSchedInfo, msg string) {
	pod := p.pod
	s.log.Debug("pod does not fit", "pod", key, "reason", msg)
	s.recorder.Event(pod, v1.EventTypeWarning, "FailedScheduling", msg)
	s.queue.backoff(key, p)
	if c := podCondition(pod, v1.PodScheduled); c != nil && c.Status == v1.ConditionFalse &&
		c.Reason == v1.PodReasonUnschedulable && c.Message == msg {
		return // already says so
	}
	s.background(ctx, func() {
		err := s.setUnschedulable(ctx, pod, msg)
		if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			s.log.Warn("could not set PodScheduled=False", "pod", key, "err", err)
		}
	})
}

// setUnschedulable patches the PodScheduled condition through pods/status
// (a strategic merge on the conditions list keyed by type, so nothing else
// of the status is overwritten), if the pod has not changed since.
func (s *Scheduler) setUnschedulable(ctx context.Context, pod *v1.Pod, msg string) error {
	transition := metav1.Now()
	if c := podCondition(pod, v1.PodScheduled); c != nil && c.Status == v1.ConditionFalse {
		transition = c.LastTransitionTime
	}
	patch, err := json.Marshal(map[string]any{
		// Only the pod as it was judged: once bound (or otherwise
		// changed) the verdict is stale, and a late write must not mark
		// a bound pod unschedulable. A Conflict leaves it to the retry.
		"metadata": map[string]any{"resourceVersion": pod.ResourceVersion},
		"status": map[string]any{
			"conditions": []any{map[string]any{
				"type":               v1.PodScheduled,
				"status":             v1.ConditionFalse,
				"reason":             v1.PodReasonUnschedulable,
				"message":            msg,
				"lastProbeTime":      nil,
				"lastTransitionTime": transition,
			}},
		},
	})
	if err != nil {
		return err
	}
	_, err = s.cfg.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("patch status of pod %s: %w", podKey(pod), err)
	}
	return nil
}

func podCondition(pod *v1.Pod, t v1.PodConditionType) *v1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
