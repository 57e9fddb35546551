package daemonset

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
)

const (
	component = "daemonset-controller"
	// podsByDaemonSet indexes pods by the namespace/name of the DaemonSet
	// that controls them.
	podsByDaemonSet = "daemonset/controller"
)

// Controller runs DaemonSets.
type Controller struct {
	client   kubernetes.Interface
	log      *slog.Logger
	recorder record.EventRecorder
	sets     appslisters.DaemonSetLister
	nodes    corelisters.NodeLister
	podIdx   cache.Indexer
	queue    workqueue.TypedRateLimitingInterface[string]
	workers  int

	// expectations counts pod creations and deletions not yet seen.
	expectations *controller.Expectations
}

// New builds the controller and registers its informers.
func New(c *controller.Context) (controller.Runner, error) {
	dsInf := c.Informers.Apps().V1().DaemonSets()
	podInf := c.Informers.Core().V1().Pods()
	nodeInf := c.Informers.Core().V1().Nodes()
	dc := &Controller{
		client:   c.Client,
		log:      c.Logger.With("controller", "daemonset"),
		recorder: c.Recorder(component),
		sets:     dsInf.Lister(),
		nodes:    nodeInf.Lister(),
		podIdx:   podInf.Informer().GetIndexer(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "daemonset"}),
		workers:      max(1, c.Options.ConcurrentSyncs),
		expectations: controller.NewExpectations(),
	}
	if err := podInf.Informer().AddIndexers(cache.Indexers{podsByDaemonSet: func(obj any) ([]string, error) {
		if key := ownerKey(obj); key != "" {
			return []string{key}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("daemonset: pod index: %w", err)
	}
	if _, err := dsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    dc.enqueue,
		UpdateFunc: func(_, obj any) { dc.enqueue(obj) },
		DeleteFunc: dc.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("daemonset: handler: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    dc.addPod,
		UpdateFunc: dc.updatePod,
		DeleteFunc: dc.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("daemonset: pod handler: %w", err)
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { dc.enqueueAll() },
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*v1.Node)
			n, ok2 := obj.(*v1.Node)
			if ok1 && ok2 && !nodeChanged(o, n) {
				return
			}
			dc.enqueueAll()
		},
		DeleteFunc: func(any) { dc.enqueueAll() },
	}); err != nil {
		return nil, fmt.Errorf("daemonset: node handler: %w", err)
	}
	return dc, nil
}

// nodeChanged: only what decides where daemon pods run matters.
func nodeChanged(old, cur *v1.Node) bool {
	return !maps.Equal(old.Labels, cur.Labels) || !reflect.DeepEqual(old.Spec.Taints, cur.Spec.Taints) ||
		old.Spec.Unschedulable != cur.Spec.Unschedulable
}

// Run syncs DaemonSets until ctx ends.
func (dc *Controller) Run(ctx context.Context) {
	dc.log.Info("daemonset controller running", "workers", dc.workers)
	go func() {
		<-ctx.Done()
		dc.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for range dc.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dc.process(ctx) {
			}
		}()
	}
	wg.Wait()
}

func (dc *Controller) process(ctx context.Context) bool {
	key, quit := dc.queue.Get()
	if quit {
		return false
	}
	defer dc.queue.Done(key)
	after, err := dc.sync(ctx, key)
	if err != nil {
		if ctx.Err() == nil {
			dc.log.Warn("sync daemonset", "daemonset", key, "err", err)
		}
		dc.queue.AddRateLimited(key)
		return true
	}
	dc.queue.Forget(key)
	if after > 0 {
		dc.queue.AddAfter(key, after)
	}
	return true
}

func (dc *Controller) enqueue(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if ds, ok := obj.(*appsv1.DaemonSet); ok {
		dc.queue.Add(controller.Key(ds))
	}
}

func (dc *Controller) enqueueAll() {
	all, err := dc.sets.List(labels.Everything())
	if err != nil {
		return
	}
	for _, ds := range all {
		dc.queue.Add(controller.Key(ds))
	}
}

// ownerKey is the key of the DaemonSet controlling a pod, or "".
func ownerKey(obj any) string {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return ""
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "DaemonSet" || ref.APIVersion != appsv1.SchemeGroupVersion.String() {
		return ""
	}
	return p.Namespace + "/" + ref.Name
}

func (dc *Controller) addPod(obj any) {
	key := ownerKey(obj)
	if key == "" {
		return
	}
	dc.expectations.Observed(key, true)
	if obj.(*v1.Pod).DeletionTimestamp != nil {
		dc.expectations.Observed(key, false)
	}
	dc.queue.Add(key)
}

func (dc *Controller) updatePod(old, obj any) {
	key := ownerKey(obj)
	if key == "" {
		return
	}
	// A deletion is observed once: when the pod starts terminating, or
	// when it vanishes without having been seen terminating.
	if o, p := old.(*v1.Pod), obj.(*v1.Pod); o.DeletionTimestamp == nil && p.DeletionTimestamp != nil {
		dc.expectations.Observed(key, false)
	}
	dc.queue.Add(key)
}

func (dc *Controller) deletePod(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	key := ownerKey(obj)
	if key == "" {
		return
	}
	if obj.(*v1.Pod).DeletionTimestamp == nil {
		dc.expectations.Observed(key, false)
	}
	dc.queue.Add(key)
}

// podsOf lists the pods a DaemonSet controls (this incarnation only).
func (dc *Controller) podsOf(ds *appsv1.DaemonSet) []*v1.Pod {
	objs, err := dc.podIdx.ByIndex(podsByDaemonSet, controller.Key(ds))
	if err != nil {
		return nil
	}
	out := make([]*v1.Pod, 0, len(objs))
	for _, o := range objs {
		p, ok := o.(*v1.Pod)
		if !ok {
			continue
		}
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == ds.UID {
			out = append(out, p)
		}
	}
	return out
}
