package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"synod/components/controller"
)

// BurstReplicas bounds the pods one sync creates or deletes (Kubernetes'
// value); the rest wait for the next sync, after the informer has caught up.
const BurstReplicas = 500

// controllerKind is what owner references to ReplicaSets name.
var controllerKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// Event reasons, as Kubernetes' pod control records them.
const (
	reasonSuccessfulCreate = "SuccessfulCreate"
	reasonFailedCreate     = "FailedCreate"
	reasonSuccessfulDelete = "SuccessfulDelete"
	reasonFailedDelete     = "FailedDelete"
)

// Controller is the replicaset controller.
type Controller struct {
	client   kubernetes.Interface
	logger   *slog.Logger
	recorder record.EventRecorder
	workers  int

	rsLister  appslisters.ReplicaSetLister
	podLister corelisters.PodLister
	synced    []cache.InformerSynced

	queue workqueue.TypedRateLimitingInterface[string]
	// expectations counts the creations and deletions each ReplicaSet has
	// issued that the pod informer has not shown yet.
	expectations *controller.Expectations
	// deleting names the pods whose deletion each ReplicaSet expects, so one
	// deletion is counted once although the informer reports it twice (the
	// deletionTimestamp update, then the delete).
	deleting *podSet
	// burst is BurstReplicas; tests may lower it.
	burst int
}

// New builds the controller and registers its informers.
func New(c *controller.Context) (controller.Runner, error) {
	rsInformer := c.Informers.Apps().V1().ReplicaSets()
	podInformer := c.Informers.Core().V1().Pods()
	workers := c.Options.ConcurrentSyncs
	if workers < 1 {
		workers = 1
	}
	rsc := &Controller{
		client:       c.Client,
		logger:       c.Logger.With("controller", "replicaset"),
		recorder:     c.Recorder("replicaset-controller"),
		workers:      workers,
		rsLister:     rsInformer.Lister(),
		podLister:    podInformer.Lister(),
		synced:       []cache.InformerSynced{rsInformer.Informer().HasSynced, podInformer.Informer().HasSynced},
		expectations: controller.NewExpectations(),
		deleting:     newPodSet(),
		burst:        BurstReplicas,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "replicaset"}),
	}
	if _, err := rsInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    rsc.addRS,
		UpdateFunc: rsc.updateRS,
		DeleteFunc: rsc.deleteRS,
	}); err != nil {
		return nil, fmt.Errorf("replicaset informer handler: %w", err)
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    rsc.addPod,
		UpdateFunc: rsc.updatePod,
		DeleteFunc: rsc.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("pod informer handler: %w", err)
	}
	return rsc, nil
}

// Run syncs ReplicaSets with c.workers workers until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	controller.RunWorkers(ctx, c.logger, "replicaset", c.queue, c.workers, c.synced, c.sync)
}

// resolveControllerRef returns the ReplicaSet ref points to, or nil if it
// is not a ReplicaSet this cache knows under that UID.
func (c *Controller) resolveControllerRef(namespace string, ref *metav1.OwnerReference) *appsv1.ReplicaSet {
	if ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return nil
	}
	rs, err := c.rsLister.ReplicaSets(namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return nil
	}
	return rs
}

func (c *Controller) enqueue(rs *appsv1.ReplicaSet) { c.queue.Add(controller.Key(rs)) }

func (c *Controller) addRS(obj any) {
	if rs, ok := obj.(*appsv1.ReplicaSet); ok {
		c.enqueue(rs)
	}
}

func (c *Controller) updateRS(oldObj, curObj any) {
	old, ok1 := oldObj.(*appsv1.ReplicaSet)
	cur, ok2 := curObj.(*appsv1.ReplicaSet)
	if !ok1 || !ok2 {
		return
	}
	if old.UID != cur.UID {
		// Deleted and recreated under the same name between two events:
		// the old one's expectations must not block the new one.
		c.deleteRS(cache.DeletedFinalStateUnknown{Key: controller.Key(old), Obj: old})
	}
	// Any update syncs: a resync then retries ReplicaSets whose last
	// creations failed, and syncs whose expectations are pending are cheap.
	c.enqueue(cur)
}

func (c *Controller) deleteRS(obj any) {
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
	key := controller.Key(rs)
	c.expectations.Forget(key)
	c.deleting.forget(key)
	c.queue.Add(key)
}

func (c *Controller) addPod(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	if pod.DeletionTimestamp != nil {
		// A pod that shows up already being deleted (a restarted informer)
		// is a deletion, not a creation.
		c.deletePod(pod)
		return
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		rs := c.resolveControllerRef(pod.Namespace, ref)
		if rs == nil {
			return
		}
		key := controller.Key(rs)
		c.expectations.Observed(key, true)
		c.queue.Add(key)
		return
	}
	// An orphan: every ReplicaSet that selects it may want to adopt it. No
	// creation is observed, nobody created it for them.
	for _, rs := range c.podReplicaSets(pod) {
		c.enqueue(rs)
	}
}

func (c *Controller) updatePod(oldObj, curObj any) {
	old, ok1 := oldObj.(*v1.Pod)
	cur, ok2 := curObj.(*v1.Pod)
	if !ok1 || !ok2 || old.ResourceVersion == cur.ResourceVersion {
		return // a periodic resync, nothing changed
	}
	labelsChanged := !reflect.DeepEqual(old.Labels, cur.Labels)
	if cur.DeletionTimestamp != nil {
		// A graceful deletion began: the ReplicaSet should replace the pod
		// now, not once the kubelet has finished with it.
		c.deletePod(cur)
		if labelsChanged {
			c.deletePod(old)
		}
		return
	}
	curRef, oldRef := metav1.GetControllerOf(cur), metav1.GetControllerOf(old)
	refChanged := !reflect.DeepEqual(curRef, oldRef)
	if refChanged && oldRef != nil {
		if rs := c.resolveControllerRef(old.Namespace, oldRef); rs != nil {
			c.enqueue(rs)
		}
	}
	if curRef != nil {
		rs := c.resolveControllerRef(cur.Namespace, curRef)
		if rs == nil {
			return
		}
		c.enqueue(rs)
		// Availability is readiness plus time: look again once the pod has
		// been ready for minReadySeconds.
		if !controller.IsPodReady(old) && controller.IsPodReady(cur) && rs.Spec.MinReadySeconds > 0 {
			c.queue.AddAfter(controller.Key(rs), time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
		}
		return
	}
	if labelsChanged || refChanged {
		for _, rs := range c.podReplicaSets(cur) {
			c.enqueue(rs)
		}
	}
}

func (c *Controller) deletePod(obj any) {
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
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return // nobody waits for an orphan's deletion
	}
	rs := c.resolveControllerRef(pod.Namespace, ref)
	if rs == nil {
		return
	}
	key := controller.Key(rs)
	if c.deleting.observe(key, controller.Key(pod)) {
		c.expectations.Observed(key, false)
	}
	c.queue.Add(key)
}

// podReplicaSets lists the ReplicaSets whose selector matches pod.
func (c *Controller) podReplicaSets(pod *v1.Pod) []*appsv1.ReplicaSet {
	rss, err := c.rsLister.GetPodReplicaSets(pod)
	if err != nil {
		return nil
	}
	if len(rss) > 1 {
		c.logger.Warn("more than one ReplicaSet selects a pod", "namespace", pod.Namespace, "pod", pod.Name, "count", len(rss))
	}
	return rss
}

// sync brings one ReplicaSet's pods and status in line with its spec.
func (c *Controller) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not a key this controller queued
	}
	rs, err := c.rsLister.ReplicaSets(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		c.expectations.Forget(key)
		c.deleting.forget(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get replicaset %s from cache: %w", key, err)
	}
	if rs.Spec.Replicas == nil {
		// The API defaults it; never trust that blindly.
		rs = rs.DeepCopy()
		rs.Spec.Replicas = ptr.To[int32](1)
	}
	needsSync := c.expectations.Satisfied(key)
	selector, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		c.logger.Warn("replicaset has an invalid selector", "replicaset", key, "err", err)
		return nil
	}
	// All pods of the namespace, not only the selected ones: owned pods
	// whose labels no longer match must be seen to be released.
	all, err := c.podLister.Pods(namespace).List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list pods of %s: %w", key, err)
	}
	active := make([]*v1.Pod, 0, len(all))
	for _, p := range all {
		if controller.IsPodActive(p) {
			active = append(active, p)
		}
	}
	pods, err := c.claimPods(ctx, rs, selector, active)
	if err != nil {
		return err
	}
	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manageReplicas(ctx, pods, rs)
	}
	now := time.Now()
	status := calculateStatus(rs, pods, manageErr, needsSync, now)
	updated, err := c.updateStatus(ctx, rs, status)
	if err != nil {
		return errors.Join(manageErr, err)
	}
	// Pods that are ready but not yet available become so on a clock, not
	// on an event: look again when the first of them does.
	if manageErr == nil && updated.Spec.MinReadySeconds > 0 {
		if wait, ok := nextAvailable(pods, updated.Spec.MinReadySeconds, now); ok {
			c.queue.AddAfter(key, wait)
		}
	}
	return manageErr
}

// manageReplicas creates or deletes pods so that len(pods) approaches
// spec.replicas, at most c.burst per sync.
func (c *Controller) manageReplicas(ctx context.Context, pods []*v1.Pod, rs *appsv1.ReplicaSet) error {
	key := controller.Key(rs)
	diff := len(pods) - int(*rs.Spec.Replicas)
	switch {
	case diff < 0:
		n := min(-diff, c.burst)
		c.expectations.Expect(key, n, 0)
		created, err := slowStartBatch(n, 1, func() (bool, error) { return c.createPod(ctx, rs) })
		// Creations never attempted, failed or refused will never show up
		// in the informer: stop waiting for them.
		for range n - created {
			c.expectations.Observed(key, true)
		}
		return err
	case diff > 0:
		n := min(diff, c.burst)
		related := c.relatedPods(rs)
		victims := podsToDelete(pods, related, n)
		podKeys := make([]string, len(victims))
		for i, p := range victims {
			podKeys[i] = controller.Key(p)
		}
		// Expect before deleting: the informer may report a deletion before
		// the DELETE call returns.
		c.deleting.expect(key, podKeys)
		c.expectations.Expect(key, 0, len(victims))
		errs := make(chan error, len(victims))
		var wg sync.WaitGroup
		for _, pod := range victims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.deletePodOf(ctx, rs, pod); err != nil {
					if c.deleting.observe(key, controller.Key(pod)) {
						c.expectations.Observed(key, false)
					}
					if !apierrors.IsNotFound(err) {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		// The failures are likely all alike: report the first.
		return <-errs
	}
	return nil
}

// createPod creates one pod from rs's template. It reports whether a pod
// was created (and so will be seen by the informer).
func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet) (bool, error) {
	pod := controller.PodFromTemplate(&rs.Spec.Template, rs, controllerKind)
	if len(pod.Labels) == 0 {
		return false, fmt.Errorf("unable to create pods for %s: the template has no labels", controller.Key(rs))
	}
	out, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
			// Every creation would fail the same way, and the namespace
			// controller is about to delete the ReplicaSet anyway.
			return false, nil
		}
		c.recorder.Eventf(rs, v1.EventTypeWarning, reasonFailedCreate, "Error creating: %v", err)
		return false, fmt.Errorf("create pod for %s: %w", controller.Key(rs), err)
	}
	c.logger.Debug("created pod", "replicaset", controller.Key(rs), "pod", out.Name)
	c.recorder.Eventf(rs, v1.EventTypeNormal, reasonSuccessfulCreate, "Created pod: %v", out.Name)
	return true, nil
}

func (c *Controller) deletePodOf(ctx context.Context, rs *appsv1.ReplicaSet, pod *v1.Pod) error {
	err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return err
		}
		c.recorder.Eventf(rs, v1.EventTypeWarning, reasonFailedDelete, "Error deleting: %v", err)
		return fmt.Errorf("delete pod %s of %s: %w", pod.Name, controller.Key(rs), err)
	}
	c.logger.Debug("deleted pod", "replicaset", controller.Key(rs), "pod", pod.Name)
	c.recorder.Eventf(rs, v1.EventTypeNormal, reasonSuccessfulDelete, "Deleted pod: %v", pod.Name)
	return nil
}

// relatedPods are the active pods of every ReplicaSet with the same
// controller as rs (the other revisions of its Deployment): scale-down
// prefers pods on nodes crowded with them.
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet) []*v1.Pod {
	owner := metav1.GetControllerOf(rs)
	if owner == nil {
		return nil
	}
	all, err := c.rsLister.ReplicaSets(rs.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []*v1.Pod
	for _, other := range all {
		if ref := metav1.GetControllerOf(other); ref == nil || ref.UID != owner.UID {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(other.Spec.Selector)
		if err != nil {
			continue
		}
		pods, err := c.podLister.Pods(other.Namespace).List(sel)
		if err != nil {
			continue
		}
		for _, p := range pods {
			if !seen[string(p.UID)] {
				seen[string(p.UID)] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// updateStatus writes status unless rs already has it, retrying once on a
// conflict with a fresh copy. It returns the ReplicaSet as stored.
func (c *Controller) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, status appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	if statusEqual(rs.Status, status) {
		return rs, nil
	}
	cur := rs.DeepCopy()
	for attempt := 0; ; attempt++ {
		cur.Status = status
		out, err := c.client.AppsV1().ReplicaSets(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			return out, nil
		}
		if !apierrors.IsConflict(err) || attempt >= 1 {
			return nil, fmt.Errorf("update status of %s: %w", controller.Key(rs), err)
		}
		fresh, gerr := c.client.AppsV1().ReplicaSets(cur.Namespace).Get(ctx, cur.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, fmt.Errorf("get %s after a status conflict: %w", controller.Key(rs), gerr)
		}
		if fresh.UID != rs.UID {
			return nil, fmt.Errorf("replicaset %s was replaced while its status was written", controller.Key(rs))
		}
		cur = fresh
	}
}
