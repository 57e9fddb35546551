package job

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
)

const (
	component = "job-controller"
	// podsByJob indexes pods by the namespace/name of the Job that
	// controls them, whichever incarnation of that name it was.
	podsByJob = "job/controller"

	// Kubernetes' pod-failure backoff (DefaultJobPodFailureBackOff and
	// the cap the brief asks for).
	defaultBackoff = 10 * time.Second
	maxBackoff     = 6 * time.Minute
)

// Controller runs Jobs.
type Controller struct {
	client   kubernetes.Interface
	log      *slog.Logger
	recorder record.EventRecorder
	jobs     batchlisters.JobLister
	podIdx   cache.Indexer
	queue    workqueue.TypedRateLimitingInterface[string]
	workers  int

	// creates counts pod creations not yet seen in the cache.
	creates *controller.Expectations
	// deletes and finalizers hold, per job key, the UIDs of pods whose
	// deletion or finalizer removal was sent but not yet seen.
	deletes    *uidExpectations
	finalizers *uidExpectations
	backoffs   *backoffStore

	// backoffBase and backoffMax are the pod-failure backoff; tests
	// shorten them.
	backoffBase, backoffMax time.Duration
	now                     func() time.Time
}

// New builds the controller and registers its informers.
func New(c *controller.Context) (controller.Runner, error) {
	jobInf := c.Informers.Batch().V1().Jobs()
	podInf := c.Informers.Core().V1().Pods()
	jc := &Controller{
		client:   c.Client,
		log:      c.Logger.With("controller", "job"),
		recorder: c.Recorder(component),
		jobs:     jobInf.Lister(),
		podIdx:   podInf.Informer().GetIndexer(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "job"}),
		workers:     max(1, c.Options.ConcurrentSyncs),
		creates:     controller.NewExpectations(),
		deletes:     newUIDExpectations(),
		finalizers:  newUIDExpectations(),
		backoffs:    newBackoffStore(),
		backoffBase: defaultBackoff,
		backoffMax:  maxBackoff,
		now:         time.Now,
	}
	if err := podInf.Informer().AddIndexers(cache.Indexers{podsByJob: func(obj any) ([]string, error) {
		if key := jobKeyOf(obj); key != "" {
			return []string{key}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("job: pod index: %w", err)
	}
	if _, err := jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    jc.enqueueJob,
		UpdateFunc: func(_, obj any) { jc.enqueueJob(obj) },
		DeleteFunc: jc.enqueueJob,
	}); err != nil {
		return nil, fmt.Errorf("job: job handler: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    jc.addPod,
		UpdateFunc: jc.updatePod,
		DeleteFunc: jc.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("job: pod handler: %w", err)
	}
	return jc, nil
}

// Run syncs jobs until ctx ends.
func (jc *Controller) Run(ctx context.Context) {
	jc.log.Info("job controller running", "workers", jc.workers)
	go func() {
		<-ctx.Done()
		jc.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for range jc.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for jc.process(ctx) {
			}
		}()
	}
	wg.Wait()
}

func (jc *Controller) process(ctx context.Context) bool {
	key, quit := jc.queue.Get()
	if quit {
		return false
	}
	defer jc.queue.Done(key)
	after, err := jc.sync(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			jc.log.Warn("sync job", "job", key, "err", err)
		}
		jc.queue.AddRateLimited(key)
	default:
		jc.queue.Forget(key)
		if after > 0 {
			jc.queue.AddAfter(key, after)
		}
	}
	return true
}

func (jc *Controller) enqueueJob(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if j, ok := obj.(*batchv1.Job); ok {
		jc.queue.Add(controller.Key(j))
	}
}

// jobKeyOf is the key of the Job controlling a pod, or "".
func jobKeyOf(obj any) string {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return ""
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "Job" || ref.APIVersion != batchv1.SchemeGroupVersion.String() {
		return ""
	}
	return p.Namespace + "/" + ref.Name
}

func (jc *Controller) addPod(obj any) {
	key := jobKeyOf(obj)
	if key == "" {
		return
	}
	jc.creates.Observed(key, true)
	if p := obj.(*v1.Pod); p.DeletionTimestamp != nil {
		jc.deletes.observed(key, p.UID)
	}
	jc.queue.Add(key)
}

func (jc *Controller) updatePod(old, obj any) {
	key := jobKeyOf(obj)
	if key == "" {
		// A pod released by its job (or never owned) is none of ours.
		if oldKey := jobKeyOf(old); oldKey != "" {
			jc.queue.Add(oldKey)
		}
		return
	}
	p := obj.(*v1.Pod)
	if p.DeletionTimestamp != nil {
		jc.deletes.observed(key, p.UID)
	}
	if !hasFinalizer(p) {
		jc.finalizers.observed(key, p.UID)
	}
	jc.queue.Add(key)
}

func (jc *Controller) deletePod(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	key := jobKeyOf(obj)
	if key == "" {
		return
	}
	p := obj.(*v1.Pod)
	jc.deletes.observed(key, p.UID)
	jc.finalizers.observed(key, p.UID)
	jc.queue.Add(key)
}

// podsOf lists the pods controlled by any Job named key, from the cache.
func (jc *Controller) podsOf(key string) []*v1.Pod {
	objs, err := jc.podIdx.ByIndex(podsByJob, key)
	if err != nil {
		return nil
	}
	out := make([]*v1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

func hasFinalizer(p *v1.Pod) bool {
	for _, f := range p.Finalizers {
		if f == batchv1.JobTrackingFinalizer {
			return true
		}
	}
	return false
}
