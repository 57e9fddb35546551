package replicaset

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"synod/components/controller"
)

// podSet remembers, per ReplicaSet key, the pods whose deletion it waits for.
type podSet struct {
	mu sync.Mutex
	m  map[string]map[string]bool
}

func newPodSet() *podSet { return &podSet{m: map[string]map[string]bool{}} }

func (s *podSet) expect(key string, pods []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.m[key]
	if set == nil {
		set = map[string]bool{}
		s.m[key] = set
	}
	for _, p := range pods {
		set[p] = true
	}
}

// observe removes pod from key's set and reports whether it was there.
func (s *podSet) observe(key, pod string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.m[key]
	if !set[pod] {
		return false
	}
	delete(set, pod)
	if len(set) == 0 {
		delete(s.m, key)
	}
	return true
}

func (s *podSet) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// slowStartBatch calls fn count times, in batches of initial, 2*initial,
// 4*initial... run in parallel. A batch with a failure ends the run, so a
// doomed template costs one request, not count. It returns how many calls
// reported success (fn's bool) and the first error.
func slowStartBatch(count, initial int, fn func() (bool, error)) (int, error) {
	remaining := count
	successes := 0
	for batch := min(remaining, initial); batch > 0; batch = min(2*batch, remaining) {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
			ok   int
		)
		for range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				created, err := fn()
				mu.Lock()
				defer mu.Unlock()
				if created {
					ok++
				}
				if err != nil {
					errs = append(errs, err)
				}
			}()
		}
		wg.Wait()
		successes += ok
		if len(errs) > 0 {
			return successes, errs[0]
		}
		remaining -= batch
	}
	return successes, nil
}

// podDeletionCostAnnotation orders pods for scale-down (lower goes first).
const podDeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// podsToDelete picks n of pods, the least valuable first in Kubernetes'
// ActivePods order, with pods on nodes crowded by related pods first among
// equals.
func podsToDelete(pods, related []*v1.Pod, n int) []*v1.Pod {
	if n >= len(pods) {
		return pods
	}
	perNode := map[string]int{}
	for _, p := range related {
		if controller.IsPodActive(p) {
			perNode[p.Spec.NodeName]++
		}
	}
	ranked := make([]rankedPod, len(pods))
	for i, p := range pods {
		ranked[i] = rankedPod{pod: p, rank: perNode[p.Spec.NodeName], cost: deletionCost(p)}
	}
	sort.SliceStable(ranked, func(i, j int) bool { return lessValuable(ranked[i], ranked[j]) })
	out := make([]*v1.Pod, n)
	for i := range out {
		out[i] = ranked[i].pod
	}
	return out
}

type rankedPod struct {
	pod  *v1.Pod
	rank int // active related pods on the same node
	cost int32
}

var phaseOrdinal = map[v1.PodPhase]int{v1.PodPending: 0, v1.PodUnknown: 1, v1.PodRunning: 2}

// lessValuable is Kubernetes' ActivePodsWithRanks order: unscheduled <
// scheduled; Pending < Unknown < Running; not ready < ready; lower
// deletion cost first; more crowded node first; ready for less time first;
// more restarts first; newer first.
func lessValuable(a, b rankedPod) bool {
	pa, pb := a.pod, b.pod
	if (pa.Spec.NodeName == "") != (pb.Spec.NodeName == "") {
		return pa.Spec.NodeName == ""
	}
	if oa, ob := phaseOrdinal[pa.Status.Phase], phaseOrdinal[pb.Status.Phase]; oa != ob {
		return oa < ob
	}
	ra, rb := controller.IsPodReady(pa), controller.IsPodReady(pb)
	if ra != rb {
		return !ra
	}
	if a.cost != b.cost {
		return a.cost < b.cost
	}
	if a.rank != b.rank {
		return a.rank > b.rank
	}
	if ra && rb {
		ta, tb := readyTime(pa), readyTime(pb)
		if !ta.Equal(tb) {
			return afterOrZero(ta, tb)
		}
	}
	if xa, xb := maxRestarts(pa), maxRestarts(pb); xa != xb {
		return xa > xb
	}
	ca, cb := pa.CreationTimestamp.Time, pb.CreationTimestamp.Time
	if !ca.Equal(cb) {
		return afterOrZero(ca, cb)
	}
	return false
}

// afterOrZero: a zero time sorts first, then later times.
func afterOrZero(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero()
	}
	return a.After(b)
}

func readyTime(p *v1.Pod) time.Time {
	if c := controller.PodCondition(p, v1.PodReady); c != nil && c.Status == v1.ConditionTrue {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

func maxRestarts(p *v1.Pod) int32 {
	var m int32
	for _, s := range p.Status.ContainerStatuses {
		m = max(m, s.RestartCount)
	}
	return m
}

func deletionCost(p *v1.Pod) int32 {
	v, ok := p.Annotations[podDeletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0 // invalid values are rejected by validation in Kubernetes
	}
	return int32(n)
}

// claimPods returns the pods rs owns after adopting matching orphans and
// releasing owned pods that no longer match.
func (c *Controller) claimPods(ctx context.Context, rs *appsv1.ReplicaSet, selector labels.Selector, pods []*v1.Pod) ([]*v1.Pod, error) {
	return controller.Claim(ctx, rs, controllerKind, selector, pods, func(ctx context.Context) (metav1.Object, error) {
		return c.client.AppsV1().ReplicaSets(rs.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
	}, func(ctx context.Context, pod *v1.Pod, patch []byte) error {
		if _, err := c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("change the owner of pod %s (replicaset %s): %w", pod.Name, controller.Key(rs), err)
		}
		c.logger.Info("adopted or released pod", "replicaset", controller.Key(rs), "pod", pod.Name)
		return nil
	})
}

// calculateStatus counts rs's pods. observedGeneration only advances when
// this sync acted on the spec (see the package documentation).
func calculateStatus(rs *appsv1.ReplicaSet, pods []*v1.Pod, manageErr error, acted bool, now time.Time) appsv1.ReplicaSetStatus {
	status := *rs.Status.DeepCopy()
	template := labels.SelectorFromSet(rs.Spec.Template.Labels)
	var fully, ready, available int32
	for _, p := range pods {
		if template.Matches(labels.Set(p.Labels)) {
			fully++
		}
		if controller.IsPodReady(p) {
			ready++
			if controller.IsPodAvailable(p, rs.Spec.MinReadySeconds, now) {
				available++
			}
		}
	}
	failure := condition(status, appsv1.ReplicaSetReplicaFailure)
	switch {
	case manageErr != nil && failure == nil:
		reason := ""
		if diff := len(pods) - int(*rs.Spec.Replicas); diff < 0 {
			reason = "FailedCreate"
		} else if diff > 0 {
			reason = "FailedDelete"
		}
		status.Conditions = append(withoutCondition(status.Conditions, appsv1.ReplicaSetReplicaFailure), appsv1.ReplicaSetCondition{
			Type:               appsv1.ReplicaSetReplicaFailure,
			Status:             v1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now),
			Reason:             reason,
			Message:            manageErr.Error(),
		})
	case manageErr == nil && failure != nil && acted:
		status.Conditions = withoutCondition(status.Conditions, appsv1.ReplicaSetReplicaFailure)
	}
	status.Replicas = int32(len(pods))
	status.FullyLabeledReplicas = fully
	status.ReadyReplicas = ready
	status.AvailableReplicas = available
	if acted {
		status.ObservedGeneration = rs.Generation
	}
	return status
}

func condition(s appsv1.ReplicaSetStatus, t appsv1.ReplicaSetConditionType) *appsv1.ReplicaSetCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

func withoutCondition(cs []appsv1.ReplicaSetCondition, t appsv1.ReplicaSetConditionType) []appsv1.ReplicaSetCondition {
	var out []appsv1.ReplicaSetCondition
	for _, c := range cs {
		if c.Type != t {
			out = append(out, c)
		}
	}
	return out
}

func statusEqual(a, b appsv1.ReplicaSetStatus) bool {
	if a.Replicas != b.Replicas || a.FullyLabeledReplicas != b.FullyLabeledReplicas ||
		a.ReadyReplicas != b.ReadyReplicas || a.AvailableReplicas != b.AvailableReplicas ||
		a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return true
}

// nextAvailable returns how long until the first ready-but-not-available
// pod becomes available.
func nextAvailable(pods []*v1.Pod, minReadySeconds int32, now time.Time) (time.Duration, bool) {
	var (
		next  time.Duration
		found bool
	)
	for _, p := range pods {
		c := controller.PodCondition(p, v1.PodReady)
		if c == nil || c.Status != v1.ConditionTrue || controller.IsPodAvailable(p, minReadySeconds, now) {
			continue
		}
		// A little past the boundary: IsPodAvailable wants strictly after.
		wait := c.LastTransitionTime.Add(time.Duration(minReadySeconds)*time.Second).Sub(now) + 100*time.Millisecond
		if !found || wait < next {
			next, found = max(wait, 100*time.Millisecond), true
		}
	}
	return next, found
}
