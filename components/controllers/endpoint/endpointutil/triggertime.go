package endpointutil

import (
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"

	"synod/components/controller"
)

// TriggerTimeTracker computes the endpoints.kubernetes.io/
// last-change-trigger-time annotation: the time of the earliest change
// (a pod's Ready transition, or the service's creation) that the coming
// endpoints write reflects. It is Kubernetes' TriggerTimeTracker.
type TriggerTimeTracker struct {
	mu       sync.Mutex
	services map[string]serviceState
}

type serviceState struct {
	lastServiceTriggerTime time.Time
	lastPodTriggerTimes    map[string]time.Time
}

// NewTriggerTimeTracker returns an empty tracker.
func NewTriggerTimeTracker() *TriggerTimeTracker {
	return &TriggerTimeTracker{services: map[string]serviceState{}}
}

// Compute returns the trigger time for a sync of svc over pods and
// remembers what it saw. Zero means no known change.
func (t *TriggerTimeTracker) Compute(svc *v1.Service, pods []*v1.Pod) time.Time {
	key := controller.Key(svc)
	t.mu.Lock()
	state, known := t.services[key]
	t.mu.Unlock()

	var minChanged time.Time
	podTimes := make(map[string]time.Time, len(pods))
	for _, pod := range pods {
		tt := podTriggerTime(pod)
		if tt.IsZero() {
			continue
		}
		podTimes[pod.Name] = tt
		if tt.After(state.lastPodTriggerTimes[pod.Name]) {
			minChanged = earliest(minChanged, tt)
		}
	}
	svcTime := svc.CreationTimestamp.Time
	if svcTime.After(state.lastServiceTriggerTime) {
		minChanged = earliest(minChanged, svcTime)
	}
	if !known {
		minChanged = svc.CreationTimestamp.Time
	}
	t.mu.Lock()
	t.services[key] = serviceState{lastServiceTriggerTime: svcTime, lastPodTriggerTimes: podTimes}
	t.mu.Unlock()
	return minChanged
}

// Delete forgets a deleted service.
func (t *TriggerTimeTracker) Delete(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.services, key)
}

func podTriggerTime(pod *v1.Pod) time.Time {
	if c := controller.PodCondition(pod, v1.PodReady); c != nil {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

func earliest(cur, t time.Time) time.Time {
	if cur.IsZero() || t.Before(cur) {
		return t
	}
	return cur
}
