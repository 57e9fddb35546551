package deployment

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"synod/components/controller"
)

// controllerKind is what owner references to Deployments name.
var controllerKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// Controller is the deployment controller.
type Controller struct {
	client   kubernetes.Interface
	logger   *slog.Logger
	recorder record.EventRecorder
	workers  int

	dLister   appslisters.DeploymentLister
	rsLister  appslisters.ReplicaSetLister
	podLister corelisters.PodLister
	synced    []cache.InformerSynced

	queue workqueue.TypedRateLimitingInterface[string]
	// written remembers the ReplicaSet versions this controller wrote, so
	// a Deployment is not synced from a cache that does not show them yet.
	written *writeTracker
}

// New builds the controller and registers its informers.
func New(c *controller.Context) (controller.Runner, error) {
	dInformer := c.Informers.Apps().V1().Deployments()
	rsInformer := c.Informers.Apps().V1().ReplicaSets()
	podInformer := c.Informers.Core().V1().Pods()
	workers := c.Options.ConcurrentSyncs
	if workers < 1 {
		workers = 1
	}
	dc := &Controller{
		client:    c.Client,
		logger:    c.Logger.With("controller", "deployment"),
		recorder:  c.Recorder("deployment-controller"),
		workers:   workers,
		dLister:   dInformer.Lister(),
		rsLister:  rsInformer.Lister(),
		podLister: podInformer.Lister(),
		synced: []cache.InformerSynced{
			dInformer.Informer().HasSynced, rsInformer.Informer().HasSynced, podInformer.Informer().HasSynced,
		},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "deployment"}),
		written: newWriteTracker(),
	}
	if _, err := dInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    dc.enqueueObj,
		UpdateFunc: func(_, cur any) { dc.enqueueObj(cur) },
		DeleteFunc: dc.enqueueObj,
	}); err != nil {
		return nil, fmt.Errorf("deployment informer handler: %w", err)
	}
	if _, err := rsInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    dc.addReplicaSet,
		UpdateFunc: dc.updateReplicaSet,
		DeleteFunc: dc.deleteReplicaSet,
	}); err != nil {
		return nil, fmt.Errorf("replicaset informer handler: %w", err)
	}
	// Kubernetes only watches pod deletions (for Recreate); this controller
	// also counts pods when sizing a rollout, so every pod change of a
	// Deployment's ReplicaSets wakes it.
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    dc.podChanged,
		UpdateFunc: func(old, cur any) { dc.podChanged(cur) },
		DeleteFunc: dc.podChanged,
	}); err != nil {
		return nil, fmt.Errorf("pod informer handler: %w", err)
	}
	return dc, nil
}

// Run syncs Deployments with c.workers workers until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	controller.RunWorkers(ctx, c.logger, "deployment", c.queue, c.workers, c.synced, c.sync)
}

func (c *Controller) enqueueObj(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if d, ok := obj.(*appsv1.Deployment); ok {
		c.queue.Add(controller.Key(d))
	}
}

// resolveControllerRef returns the Deployment ref points to, if cached
// under that UID.
func (c *Controller) resolveControllerRef(namespace string, ref *metav1.OwnerReference) *appsv1.Deployment {
	if ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return nil
	}
	d, err := c.dLister.Deployments(namespace).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return nil
	}
	return d
}

// deploymentsFor lists the Deployments whose selector matches rs, for an
// orphan that one of them may adopt.
func (c *Controller) deploymentsFor(rs *appsv1.ReplicaSet) []*appsv1.Deployment {
	all, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil || len(rs.Labels) == 0 {
		return nil
	}
	var out []*appsv1.Deployment
	for _, d := range all {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(rs.Labels)) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func (c *Controller) addReplicaSet(obj any) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if rs.DeletionTimestamp != nil {
		c.deleteReplicaSet(rs)
		return
	}
	if ref := metav1.GetControllerOf(rs); ref != nil {
		if d := c.resolveControllerRef(rs.Namespace, ref); d != nil {
			c.queue.Add(controller.Key(d))
		}
		return
	}
	for _, d := range c.deploymentsFor(rs) {
		c.queue.Add(controller.Key(d))
	}
}

func (c *Controller) updateReplicaSet(oldObj, curObj any) {
	old, ok1 := oldObj.(*appsv1.ReplicaSet)
	cur, ok2 := curObj.(*appsv1.ReplicaSet)
	if !ok1 || !ok2 || old.ResourceVersion == cur.ResourceVersion {
		return
	}
	curRef, oldRef := metav1.GetControllerOf(cur), metav1.GetControllerOf(old)
	refChanged := (curRef == nil) != (oldRef == nil) || (curRef != nil && curRef.UID != oldRef.UID)
	if refChanged && oldRef != nil {
		if d := c.resolveControllerRef(old.Namespace, oldRef); d != nil {
			c.queue.Add(controller.Key(d))
		}
	}
	if curRef != nil {
		if d := c.resolveControllerRef(cur.Namespace, curRef); d != nil {
			c.queue.Add(controller.Key(d))
		}
		return
	}
	if refChanged || !labels.Equals(old.Labels, cur.Labels) {
		for _, d := range c.deploymentsFor(cur) {
			c.queue.Add(controller.Key(d))
		}
	}
}

func (c *Controller) deleteReplicaSet(obj any) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if rs, ok = tomb.Obj.(*appsv1.ReplicaSet); !ok {
			return
		}
	}
	c.written.forgetReplicaSet(rs.UID)
	ref := metav1.GetControllerOf(rs)
	if ref == nil {
		return
	}
	if d := c.resolveControllerRef(rs.Namespace, ref); d != nil {
		c.queue.Add(controller.Key(d))
	}
}

// podChanged wakes the Deployment whose ReplicaSet controls the pod.
func (c *Controller) podChanged(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := c.rsLister.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	if dref := metav1.GetControllerOf(rs); dref != nil {
		if d := c.resolveControllerRef(rs.Namespace, dref); d != nil {
			c.queue.Add(controller.Key(d))
		}
	}
}

// sync reconciles one Deployment.
func (c *Controller) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.dLister.Deployments(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		c.written.forgetDeployment(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get deployment %s from cache: %w", key, err)
	}
	d := cached.DeepCopy()
	if d.Spec.Replicas == nil {
		d.Spec.Replicas = ptr.To[int32](1) // the API defaults it; never trust that blindly
	}
	if d.Spec.Selector == nil || (len(d.Spec.Selector.MatchLabels) == 0 && len(d.Spec.Selector.MatchExpressions) == 0) {
		c.recorder.Eventf(d, v1.EventTypeWarning, reasonSelectingAll, "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			return c.updateStatus(ctx, d)
		}
		return nil
	}
	if !c.written.caughtUp(key, c.rsLister) {
		// The ReplicaSet events that show our writes requeue the
		// Deployment; the delay only covers a write the cache never shows
		// (the ReplicaSet deleted meanwhile).
		c.queue.AddAfter(key, time.Second)
		return nil
	}
	rsList, err := c.claimReplicaSets(ctx, d)
	if err != nil {
		return err
	}
	s, err := c.newState(d, rsList)
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		return c.syncStatusOnly(ctx, s)
	}
	if err := c.checkPausedConditions(ctx, d); err != nil {
		return err
	}
	if d.Spec.Paused {
		return c.syncScale(ctx, s)
	}
	if c.isScalingEvent(s) {
		return c.syncScale(ctx, s)
	}
	defer c.requeueForAvailability(s)
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		return c.rolloutRecreate(ctx, s)
	case appsv1.RollingUpdateDeploymentStrategyType:
		return c.rolloutRolling(ctx, s)
	}
	return fmt.Errorf("deployment %s: unexpected strategy type %q", key, d.Spec.Strategy.Type)
}

// state is what one sync knows of a Deployment: its ReplicaSets and their
// pods as cached when the sync began.
type state struct {
	d      *appsv1.Deployment
	key    string
	rsList []*appsv1.ReplicaSet
	// pods maps a ReplicaSet UID to the pods it controls.
	pods map[types.UID][]*v1.Pod
	now  time.Time
}

func (c *Controller) newState(d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) (*state, error) {
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s selector: %w", controller.Key(d), err)
	}
	pods, err := c.podLister.Pods(d.Namespace).List(selector)
	if err != nil {
		return nil, fmt.Errorf("list pods of %s: %w", controller.Key(d), err)
	}
	s := &state{d: d, key: controller.Key(d), rsList: rsList, pods: map[types.UID][]*v1.Pod{}, now: time.Now()}
	for _, rs := range rsList {
		s.pods[rs.UID] = nil
	}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil {
			continue
		}
		if _, ok := s.pods[ref.UID]; ok {
			s.pods[ref.UID] = append(s.pods[ref.UID], p)
		}
	}
	return s, nil
}

// podCount is how many pods rs may have at once: its spec, or more while
// deletions it was asked for are still in flight.
func (s *state) podCount(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	var active int32
	for _, p := range s.pods[rs.UID] {
		if controller.IsPodActive(p) {
			active++
		}
	}
	return max(replicas(rs), active)
}

// available is how many of rs's pods can be counted on as available: those
// available now, but no more than its spec, since the pods beyond it are
// about to be deleted (the least available ones first).
func (s *state) available(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	var n int32
	for _, p := range s.pods[rs.UID] {
		if controller.IsPodActive(p) && controller.IsPodAvailable(p, s.d.Spec.MinReadySeconds, s.now) {
			n++
		}
	}
	return min(replicas(rs), n)
}

func (s *state) sumPodCount(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		n += s.podCount(rs)
	}
	return n
}

func (s *state) sumAvailable(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		n += s.available(rs)
	}
	return n
}

// requeueForAvailability looks at the Deployment again when its first
// ready pod completes minReadySeconds: availability changes with time, not
// with an event.
func (c *Controller) requeueForAvailability(s *state) {
	minReady := s.d.Spec.MinReadySeconds
	if minReady == 0 {
		return
	}
	var next time.Duration
	found := false
	for _, pods := range s.pods {
		for _, p := range pods {
			cond := controller.PodCondition(p, v1.PodReady)
			if cond == nil || cond.Status != v1.ConditionTrue || !controller.IsPodActive(p) ||
				controller.IsPodAvailable(p, minReady, s.now) {
				continue
			}
			wait := cond.LastTransitionTime.Add(time.Duration(minReady)*time.Second).Sub(s.now) + 100*time.Millisecond
			if !found || wait < next {
				next, found = max(wait, 100*time.Millisecond), true
			}
		}
	}
	if found {
		c.queue.AddAfter(s.key, next)
	}
}

// claimReplicaSets returns the ReplicaSets d controls after adopting
// matching orphans and releasing owned ones that no longer match.
func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s selector: %w", controller.Key(d), err)
	}
	all, err := c.rsLister.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list replicasets of %s: %w", controller.Key(d), err)
	}
	return controller.Claim(ctx, d, controllerKind, selector, all, func(ctx context.Context) (metav1.Object, error) {
		return c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
	}, c.patchOwner)
}

func (c *Controller) patchOwner(ctx context.Context, rs *appsv1.ReplicaSet, patch []byte) error {
	if _, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Patch(ctx, rs.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch owner of replicaset %s: %w", controller.Key(rs), err)
	}
	return nil
}

// Writes.

// createRS creates rs and remembers the write for d.
func (c *Controller) createRS(ctx context.Context, s *state, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	out, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		return nil, err // callers look at the reason
	}
	c.written.record(s.key, out)
	return out, nil
}

// updateRS writes rs's spec and metadata and remembers the write.
func (c *Controller) updateRS(ctx context.Context, s *state, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	out, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, rs, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update replicaset %s: %w", controller.Key(rs), err)
	}
	c.written.record(s.key, out)
	return out, nil
}

// updateStatus writes d's status; d then carries the new resourceVersion
// so later writes of the same sync do not conflict with this one.
func (c *Controller) updateStatus(ctx context.Context, d *appsv1.Deployment) error {
	out, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update status of deployment %s: %w", controller.Key(d), err)
	}
	d.ResourceVersion = out.ResourceVersion
	return nil
}

// updateAnnotations writes d's metadata (the revision annotation). The
// status subresource cannot carry it here: unlike kube-apiserver, synod's
// status writes change status only.
func (c *Controller) updateAnnotations(ctx context.Context, d *appsv1.Deployment) error {
	out, err := c.client.AppsV1().Deployments(d.Namespace).Update(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update deployment %s: %w", controller.Key(d), err)
	}
	d.ResourceVersion = out.ResourceVersion
	return nil
}

// writeTracker remembers, per Deployment, the resourceVersion of each
// ReplicaSet this controller last wrote.
type writeTracker struct {
	mu sync.Mutex
	m  map[string]map[types.UID]written
}

type written struct {
	name string
	rv   uint64
	at   time.Time
}

// writeTrackerTimeout bounds the wait for a write the cache never shows.
const writeTrackerTimeout = 30 * time.Second

func newWriteTracker() *writeTracker { return &writeTracker{m: map[string]map[types.UID]written{}} }

func (w *writeTracker) record(key string, rs *appsv1.ReplicaSet) {
	rv, err := strconv.ParseUint(rs.ResourceVersion, 10, 64)
	if err != nil {
		return // not a number: cannot compare, do not wait
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m[key] == nil {
		w.m[key] = map[types.UID]written{}
	}
	w.m[key][rs.UID] = written{name: rs.Name, rv: rv, at: time.Now()}
}

// caughtUp reports whether the cache shows every write recorded for key.
func (w *writeTracker) caughtUp(key string, lister appslisters.ReplicaSetLister) bool {
	namespace, _, _ := cache.SplitMetaNamespaceKey(key)
	w.mu.Lock()
	defer w.mu.Unlock()
	for uid, wr := range w.m[key] {
		if time.Since(wr.at) > writeTrackerTimeout {
			delete(w.m[key], uid)
			continue
		}
		rs, err := lister.ReplicaSets(namespace).Get(wr.name)
		if err != nil || rs.UID != uid {
			return false
		}
		rv, err := strconv.ParseUint(rs.ResourceVersion, 10, 64)
		if err == nil && rv < wr.rv {
			return false
		}
		delete(w.m[key], uid)
	}
	delete(w.m, key)
	return true
}

func (w *writeTracker) forgetReplicaSet(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, m := range w.m {
		delete(m, uid)
		if len(m) == 0 {
			delete(w.m, key)
		}
	}
}

func (w *writeTracker) forgetDeployment(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}
