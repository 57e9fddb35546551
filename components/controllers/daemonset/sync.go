package daemonset

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"synod/components/controller"
)

// burstReplicas bounds the creates and deletes of one sync, as Kubernetes'
// BurstReplicas does.
const burstReplicas = 250

// sync makes one DaemonSet's pods match its nodes and records its status.
func (dc *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	ds, err := dc.sets.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		dc.expectations.Forget(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if ds.DeletionTimestamp != nil {
		return 0, nil // the garbage collector removes its pods
	}
	nodes, err := dc.nodes.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	hash := templateHash(ds)
	var syncErr error
	if dc.expectations.Satisfied(key) {
		syncErr = dc.manage(ctx, key, ds, nodes, hash)
		if syncErr == nil && dc.expectations.Satisfied(key) && ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
			syncErr = dc.rollingUpdate(ctx, key, ds, nodes, hash)
		}
	}
	after, err := dc.updateStatus(ctx, key, ds, nodes, hash)
	return after, errors.Join(syncErr, err)
}

// byNode groups the DaemonSet's pods by the node they run on or target,
// leaving out finished pods already being deleted.
func (dc *Controller) byNode(ds *appsv1.DaemonSet) map[string][]*v1.Pod {
	out := map[string][]*v1.Pod{}
	for _, p := range dc.podsOf(ds) {
		terminal := p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
		if terminal && p.DeletionTimestamp != nil {
			continue
		}
		if n := targetNode(p); n != "" {
			out[n] = append(out[n], p)
		}
	}
	for _, pods := range out {
		oldestFirst(pods)
	}
	return out
}

// manage creates pods on nodes that lack one, and deletes pods that must
// not be where they are: on nodes that no longer qualify or exist, failed
// pods, and duplicates.
func (dc *Controller) manage(ctx context.Context, key string, ds *appsv1.DaemonSet, nodes []*v1.Node, hash string) error {
	pods := dc.byNode(ds)
	tmpl := templatePod(ds)
	surge := maxSurge(ds, len(nodes)) > 0
	var create []string
	var del []*v1.Pod
	exists := map[string]bool{}
	for _, node := range nodes {
		exists[node.Name] = true
		run, keep := shouldRun(tmpl, node)
		onNode := pods[node.Name]
		switch {
		case run && len(onNode) == 0:
			create = append(create, node.Name)
		case keep:
			var running []*v1.Pod
			for _, p := range onNode {
				switch {
				case p.DeletionTimestamp != nil:
				case p.Status.Phase == v1.PodFailed || p.Status.Phase == v1.PodSucceeded:
					// A daemon should not end; start it over.
					dc.recorder.Eventf(ds, v1.EventTypeWarning, "FailedDaemonPod", "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, node.Name)
					del = append(del, p)
				default:
					running = append(running, p)
				}
			}
			del = append(del, duplicates(running, hash, surge)...)
		case len(onNode) > 0:
			for _, p := range onNode {
				if p.DeletionTimestamp == nil {
					del = append(del, p)
				}
			}
		}
	}
	// Pods of nodes that are gone: nobody will confirm a graceful delete.
	var orphans []*v1.Pod
	for node, onNode := range pods {
		if exists[node] {
			continue
		}
		for _, p := range onNode {
			if p.DeletionTimestamp == nil || p.Spec.NodeName != "" {
				orphans = append(orphans, p)
			}
		}
	}
	return dc.syncNodes(ctx, key, ds, del, orphans, create, hash)
}

// duplicates are the running pods of one node beyond the one to keep (the
// oldest; with surge, also the oldest up-to-date one, which the rolling
// update is bringing up).
func duplicates(running []*v1.Pod, hash string, surge bool) []*v1.Pod {
	if len(running) <= 1 {
		return nil
	}
	keep := map[*v1.Pod]bool{running[0]: true}
	if surge {
		for _, p := range running {
			if p.Labels[hashLabel] == hash {
				keep[p] = true
				break
			}
		}
		if len(keep) == 1 && running[0].Labels[hashLabel] == hash {
			// The oldest is new already: keep the oldest old one too.
			for _, p := range running[1:] {
				keep[p] = true
				break
			}
		}
	}
	var out []*v1.Pod
	for _, p := range running {
		if !keep[p] {
			out = append(out, p)
		}
	}
	return out
}

// syncNodes deletes del (gracefully) and orphans (at once), then creates a
// pod on each node of create, in batches of 1, 2, 4, ...
func (dc *Controller) syncNodes(ctx context.Context, key string, ds *appsv1.DaemonSet, del, orphans []*v1.Pod, create []string, hash string) error {
	if len(create) > burstReplicas {
		create = create[:burstReplicas]
	}
	if len(del)+len(orphans) > burstReplicas {
		// Orphans first: their nodes are gone.
		all := append(orphans, del...)[:burstReplicas]
		orphans, del = all[:min(len(orphans), burstReplicas)], all[min(len(orphans), burstReplicas):]
	}
	if len(create) == 0 && len(del) == 0 && len(orphans) == 0 {
		return nil
	}
	// Only deletions of pods not yet terminating are ever observed.
	dels := 0
	for _, p := range append(orphans, del...) {
		if p.DeletionTimestamp == nil {
			dels++
		}
	}
	dc.expectations.Expect(key, len(create), dels)
	var errs []error
	for i, p := range append(orphans, del...) {
		opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}
		if i < len(orphans) {
			opts.GracePeriodSeconds = ptr.To[int64](0)
		}
		err := dc.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, opts)
		switch {
		case err == nil:
			dc.recorder.Eventf(ds, v1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", p.Name)
		case apierrors.IsNotFound(err):
			if p.DeletionTimestamp == nil {
				dc.expectations.Observed(key, false)
			}
		default:
			if p.DeletionTimestamp == nil {
				dc.expectations.Observed(key, false)
			}
			if ctx.Err() == nil {
				dc.recorder.Eventf(ds, v1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			}
			errs = append(errs, fmt.Errorf("daemonset: delete pod %s/%s: %w", p.Namespace, p.Name, err))
		}
	}
	for pos, batch := 0, 1; pos < len(create); batch *= 2 {
		size := min(batch, len(create)-pos)
		results := make([]error, size)
		var wg sync.WaitGroup
		for k := range size {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[k] = dc.createPod(ctx, ds, create[pos+k], hash)
			}()
		}
		wg.Wait()
		pos += size
		var batchErr error
		for _, err := range results {
			if err != nil {
				dc.expectations.Observed(key, true)
				batchErr = errors.Join(batchErr, err)
			}
		}
		if batchErr != nil {
			for range len(create) - pos {
				dc.expectations.Observed(key, true)
			}
			errs = append(errs, batchErr)
			break
		}
	}
	return errors.Join(errs...)
}

func (dc *Controller) createPod(ctx context.Context, ds *appsv1.DaemonSet, node, hash string) error {
	out, err := dc.client.CoreV1().Pods(ds.Namespace).Create(ctx, newPod(ds, node, hash), metav1.CreateOptions{})
	if err != nil {
		if ctx.Err() == nil {
			dc.recorder.Eventf(ds, v1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		}
		return fmt.Errorf("daemonset: create pod for %s on %s: %w", controller.Key(ds), node, err)
	}
	dc.recorder.Eventf(ds, v1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", out.Name)
	return nil
}

// updateStatus records the DaemonSet's status; it returns when to look
// again for pods that will become available after minReadySeconds.
func (dc *Controller) updateStatus(ctx context.Context, key string, ds *appsv1.DaemonSet, nodes []*v1.Node, hash string) (time.Duration, error) {
	pods := dc.byNode(ds)
	tmpl := templatePod(ds)
	now := time.Now()
	var st appsv1.DaemonSetStatus
	var after time.Duration
	for _, node := range nodes {
		run, _ := shouldRun(tmpl, node)
		onNode := pods[node.Name]
		if !run {
			if len(onNode) > 0 {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(onNode) == 0 {
			continue
		}
		st.CurrentNumberScheduled++
		p := onNode[0]
		if controller.IsPodReady(p) {
			st.NumberReady++
			if controller.IsPodAvailable(p, ds.Spec.MinReadySeconds, now) {
				st.NumberAvailable++
			} else if c := controller.PodCondition(p, v1.PodReady); c != nil {
				wait := c.LastTransitionTime.Add(time.Duration(ds.Spec.MinReadySeconds)*time.Second).Sub(now) + 100*time.Millisecond
				if after == 0 || wait < after {
					after = max(wait, 100*time.Millisecond)
				}
			}
		}
		if p.Labels[hashLabel] == hash {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	st.ObservedGeneration = ds.Status.ObservedGeneration
	if dc.expectations.Satisfied(key) {
		st.ObservedGeneration = ds.Generation
	}
	st.CollisionCount = ds.Status.CollisionCount
	st.Conditions = ds.Status.Conditions
	if statusEqual(ds.Status, st) {
		return after, nil
	}
	cp := ds.DeepCopy()
	cp.Status = st
	if _, err := dc.client.AppsV1().DaemonSets(ds.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return after, fmt.Errorf("daemonset: update status of %s: %w", key, err)
	}
	return after, nil
}

func statusEqual(a, b appsv1.DaemonSetStatus) bool {
	return a.DesiredNumberScheduled == b.DesiredNumberScheduled && a.CurrentNumberScheduled == b.CurrentNumberScheduled &&
		a.NumberMisscheduled == b.NumberMisscheduled && a.NumberReady == b.NumberReady &&
		a.UpdatedNumberScheduled == b.UpdatedNumberScheduled && a.NumberAvailable == b.NumberAvailable &&
		a.NumberUnavailable == b.NumberUnavailable && a.ObservedGeneration == b.ObservedGeneration
}

// maxUnavailable and maxSurge resolve the rolling update's bounds against
// the number of nodes that should run the daemon, as Kubernetes does (at
// least one unavailable when both are zero).
func maxUnavailable(ds *appsv1.DaemonSet, desired int) int {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil {
		return 1
	}
	u := scaled(ru.MaxUnavailable, desired)
	if u == 0 && scaled(ru.MaxSurge, desired) == 0 {
		return 1
	}
	return u
}

func maxSurge(ds *appsv1.DaemonSet, desired int) int {
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ds.Spec.UpdateStrategy.RollingUpdate == nil {
		return 0
	}
	return scaled(ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge, desired)
}

func scaled(v *intstr.IntOrString, total int) int {
	if v == nil {
		return 0
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, total, true)
	if err != nil {
		return 0
	}
	return n
}
