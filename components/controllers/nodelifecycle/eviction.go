package nodelifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"synod/components/controller"
)

// processEviction handles one pod key from the eviction queue.
func (nc *Controller) processEviction(ctx context.Context) bool {
	key, quit := nc.evictions.Get()
	if quit {
		return false
	}
	defer nc.evictions.Done(key)
	wait, err := nc.syncEviction(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			nc.log.Warn("evict pod", "pod", key, "err", err)
		}
		nc.evictions.AddRateLimited(key)
	case wait > 0:
		nc.evictions.Forget(key)
		nc.evictions.AddAfter(key, wait)
	default:
		nc.evictions.Forget(key)
	}
	return true
}

// syncEviction deletes the pod if a NoExecute taint of its node says so,
// or returns how long until one will.
func (nc *Controller) syncEviction(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := nc.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// Finished pods hold nothing on the node; pods already being deleted
	// need no second delete.
	if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return 0, nil
	}
	node, err := nc.nodes.Get(pod.Spec.NodeName)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	taints := noExecuteTaints(node)
	if len(taints) == 0 {
		return 0, nil
	}
	now := time.Now()
	at, evict := nc.evictionTime(node.Name, pod.Spec.Tolerations, taints, now)
	if !evict {
		return 0, nil
	}
	if wait := at.Sub(now); wait > 0 {
		return wait, nil
	}
	return 0, nc.evict(ctx, pod)
}

// evictionTime is when the pod must leave a node with these NoExecute
// taints: now for a taint it does not tolerate; timeAdded +
// tolerationSeconds for one tolerated for a while (the earliest such);
// never (false) if it tolerates them all forever. As in Kubernetes, the
// first toleration that matches a taint is the one that counts.
func (nc *Controller) evictionTime(node string, tolerations []v1.Toleration, taints []v1.Taint, now time.Time) (time.Time, bool) {
	var at time.Time
	evict := false
	for i := range taints {
		taint := &taints[i]
		var tol *v1.Toleration
		for j := range tolerations {
			if tolerations[j].ToleratesTaint(logr.Discard(), taint, false) {
				tol = &tolerations[j]
				break
			}
		}
		if tol == nil {
			return now, true
		}
		if tol.TolerationSeconds == nil {
			continue
		}
		start := nc.taintStart(node, taint, now)
		deadline := start.Add(time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second)
		if !evict || deadline.Before(at) {
			at, evict = deadline, true
		}
	}
	return at, evict
}

// taintStart is the taint's timeAdded, or when this controller first saw
// it if the taint was added without one.
func (nc *Controller) taintStart(node string, taint *v1.Taint, now time.Time) time.Time {
	if taint.TimeAdded != nil {
		return taint.TimeAdded.Time
	}
	nc.taintSeenMu.Lock()
	defer nc.taintSeenMu.Unlock()
	k := node + "/" + taint.ToString()
	if t, ok := nc.taintSeen[k]; ok {
		return t
	}
	nc.taintSeen[k] = now
	return now
}

// forgetUntimedTaints drops the first-seen times of taints the node no
// longer has (all of them once the node is gone).
func (nc *Controller) forgetUntimedTaints(node *v1.Node, gone bool) {
	nc.taintSeenMu.Lock()
	defer nc.taintSeenMu.Unlock()
	if len(nc.taintSeen) == 0 {
		return
	}
	keep := map[string]bool{}
	if !gone {
		for _, t := range noExecuteTaints(node) {
			keep[node.Name+"/"+t.ToString()] = true
		}
	}
	prefix := node.Name + "/"
	for k := range nc.taintSeen {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix && !keep[k] {
			delete(nc.taintSeen, k)
		}
	}
}

// evict deletes the pod the way the taint-eviction-controller does: an
// event, a DisruptionTarget condition (best effort), then a graceful delete
// (the pod's kubelet, if alive, stops it; the pod's controller replaces it
// as soon as it is terminating).
func (nc *Controller) evict(ctx context.Context, pod *v1.Pod) error {
	key := controller.Key(pod)
	nc.log.Info("evicting pod from tainted node", "pod", key, "node", pod.Spec.NodeName)
	nc.evictRecorder.Eventf(pod, v1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s", key)
	cp := pod.DeepCopy()
	setDisruptionTarget(cp)
	if _, err := nc.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		nc.log.Debug("set DisruptionTarget", "pod", key, "err", err)
	}
	err := nc.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("nodelifecycle: delete pod %s: %w", key, err)
	}
	return nil
}

func setDisruptionTarget(p *v1.Pod) {
	c := v1.PodCondition{Type: v1.DisruptionTarget, Status: v1.ConditionTrue, Reason: "DeletionByTaintManager",
		Message: "Taint manager: deleting due to NoExecute taint", LastTransitionTime: metav1.Now()}
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.DisruptionTarget {
			p.Status.Conditions[i] = c
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, c)
}
