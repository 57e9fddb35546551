package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
	"synod/components/controllers/endpoint/endpointutil"
)

const (
	// ControllerName is the managed-by label value of the slices this
	// controller owns, as in Kubernetes.
	ControllerName = "endpointslice-controller.k8s.io"
	// component is the name events are reported as.
	component = "endpoint-slice-controller"
	// MaxEndpointsPerSlice is kube-controller-manager's
	// --max-endpoints-per-slice default.
	MaxEndpointsPerSlice = 100
)

// errStaleCache: the informer has not shown this controller's own last
// writes yet; acting now could duplicate slices.
var errStaleCache = fmt.Errorf("endpointslice cache is behind this controller's writes: %w", controller.ErrRetry)

// Controller keeps a service's EndpointSlices in line with its pods.
type Controller struct {
	client   kubernetes.Interface
	recorder record.EventRecorder
	log      *slog.Logger
	workers  int
	services corelisters.ServiceLister
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	slices   discoverylisters.EndpointSliceLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	trigger  *endpointutil.TriggerTimeTracker
	tracker  *sliceTracker
}

// New builds the controller from the shared informers.
func New(c *controller.Context) (controller.Runner, error) {
	svcInformer := c.Informers.Core().V1().Services()
	podInformer := c.Informers.Core().V1().Pods()
	nodeInformer := c.Informers.Core().V1().Nodes()
	sliceInformer := c.Informers.Discovery().V1().EndpointSlices()
	e := &Controller{
		client:   c.Client,
		recorder: c.Recorder(component),
		log:      c.Logger.With("controller", "endpointslice"),
		workers:  max(1, c.Options.ConcurrentSyncs),
		services: svcInformer.Lister(),
		pods:     podInformer.Lister(),
		nodes:    nodeInformer.Lister(),
		slices:   sliceInformer.Lister(),
		synced: []cache.InformerSynced{svcInformer.Informer().HasSynced, podInformer.Informer().HasSynced,
			nodeInformer.Informer().HasSynced, sliceInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpoint_slice"}),
		trigger: endpointutil.NewTriggerTimeTracker(),
		tracker: newSliceTracker(),
	}
	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    e.enqueue,
		UpdateFunc: func(_, obj any) { e.enqueue(obj) },
		DeleteFunc: e.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("endpointslice: service handler: %w", err)
	}
	if _, err := podInformer.Informer().AddEventHandler(endpointutil.PodHandler(e.services, e.queue.Add)); err != nil {
		return nil, fmt.Errorf("endpointslice: pod handler: %w", err)
	}
	// Slices changed or deleted by someone else are put back.
	onSlice := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		s, ok := obj.(*discovery.EndpointSlice)
		if !ok || s.Labels[discovery.LabelManagedBy] != ControllerName || s.Labels[discovery.LabelServiceName] == "" {
			return
		}
		e.queue.Add(s.Namespace + "/" + s.Labels[discovery.LabelServiceName])
	}
	if _, err := sliceInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onSlice,
		UpdateFunc: func(_, obj any) { onSlice(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if s, ok := obj.(*discovery.EndpointSlice); ok {
				e.tracker.observedDeletion(s.Namespace+"/"+s.Labels[discovery.LabelServiceName], s.UID)
			}
			onSlice(obj)
		},
	}); err != nil {
		return nil, fmt.Errorf("endpointslice: slice handler: %w", err)
	}
	return e, nil
}

func (e *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		e.queue.Add(key)
	}
}

// Run syncs services until ctx ends.
func (e *Controller) Run(ctx context.Context) {
	controller.RunWorkers(ctx, e.log, "endpointslice", e.queue, e.workers, e.synced, e.sync)
}

func (e *Controller) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	selector := labels.SelectorFromSet(labels.Set{discovery.LabelServiceName: name, discovery.LabelManagedBy: ControllerName})
	existing, err := e.slices.EndpointSlices(namespace).List(selector)
	if err != nil {
		return err
	}
	svc, err := e.services.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		// The slices are owned by the service: the garbage collector
		// removes them.
		e.trigger.Delete(key)
		e.tracker.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if e.tracker.stale(key, existing) {
		return errStaleCache
	}
	if svc.Spec.Type == v1.ServiceTypeExternalName || svc.Spec.Selector == nil {
		// No endpoints from this controller (any left from an earlier
		// selector go).
		return e.apply(ctx, svc, plan{remove: existing})
	}
	pods, err := e.pods.Pods(namespace).List(labels.ValidatedSetSelector(svc.Spec.Selector))
	if err != nil {
		return err
	}
	trigger := e.trigger.Compute(svc, pods)
	return e.apply(ctx, svc, reconcile(svc, existing, desired(svc, pods, e.nodes), MaxEndpointsPerSlice, trigger))
}

// apply makes the planned writes, recording each in the tracker.
func (e *Controller) apply(ctx context.Context, svc *v1.Service, p plan) error {
	key := controller.Key(svc)
	client := e.client.DiscoveryV1().EndpointSlices(svc.Namespace)
	var errs []error
	for _, s := range p.create {
		created, err := client.Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
				return nil // the namespace is going away with everything in it
			}
			errs = append(errs, fmt.Errorf("create endpointslice: %w", err))
			continue
		}
		e.tracker.written(key, created)
	}
	for _, s := range p.update {
		updated, err := client.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			errs = append(errs, fmt.Errorf("update endpointslice %s: %w", s.Name, err))
			continue
		}
		e.tracker.written(key, updated)
	}
	for _, s := range p.remove {
		uid := s.UID
		err := client.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete endpointslice %s: %w", s.Name, err))
			continue
		}
		e.tracker.deleted(key, s.UID)
	}
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() == nil {
			e.recorder.Eventf(svc, v1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s: %v", key, err)
		}
		return err
	}
	return nil
}

// sliceTracker remembers, per service, the resourceVersion of each slice
// this controller last wrote and the slices it deleted, so that a sync
// can tell when the informer cache does not show its own writes yet (as
// Kubernetes' EndpointSliceTracker does with generations; synod's
// resourceVersions are store revisions, which only grow). An entry the
// cache never catches up with (a slice someone else deleted meanwhile)
// expires after trackTimeout.
type sliceTracker struct {
	mu    sync.Mutex
	byKey map[string]map[types.UID]tracked
}

type tracked struct {
	rv int64 // -1: deletion expected
	at time.Time
}

const trackTimeout = 30 * time.Second

func newSliceTracker() *sliceTracker { return &sliceTracker{byKey: map[string]map[types.UID]tracked{}} }

func (t *sliceTracker) set(key string, uid types.UID, rv int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKey[key] == nil {
		t.byKey[key] = map[types.UID]tracked{}
	}
	t.byKey[key][uid] = tracked{rv: rv, at: time.Now()}
}

func (t *sliceTracker) written(key string, s *discovery.EndpointSlice) {
	if rv, err := strconv.ParseInt(s.ResourceVersion, 10, 64); err == nil {
		t.set(key, s.UID, rv)
	}
}

func (t *sliceTracker) deleted(key string, uid types.UID) { t.set(key, uid, -1) }

// observedDeletion drops a slice the informer saw deleted.
func (t *sliceTracker) observedDeletion(key string, uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byKey[key], uid)
}

func (t *sliceTracker) forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byKey, key)
}

// stale reports whether cached misses one of the tracked writes; entries
// the cache has caught up with are dropped.
func (t *sliceTracker) stale(key string, cached []*discovery.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	want := t.byKey[key]
	if len(want) == 0 {
		return false
	}
	seen := make(map[types.UID]int64, len(cached))
	for _, s := range cached {
		rv, _ := strconv.ParseInt(s.ResourceVersion, 10, 64)
		seen[s.UID] = rv
	}
	stale := false
	for uid, w := range want {
		got, present := seen[uid]
		behind := (w.rv == -1 && present) || (w.rv >= 0 && (!present || got < w.rv))
		if behind && time.Since(w.at) < trackTimeout {
			stale = true
		} else {
			delete(want, uid)
		}
	}
	return stale
}
