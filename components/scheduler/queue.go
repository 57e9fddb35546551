package scheduler

import (
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// schedQueue holds the keys ("namespace/name") of pods waiting for a node.
// A pod that fit nowhere is retried after an exponential backoff (as
// kube-scheduler's podInitialBackoff/podMaxBackoff), and at once when the
// cluster changes in a way that may make it fit: kube-scheduler's
// unschedulable pods moved to the active queue on cluster events.
type schedQueue struct {
	wq workqueue.TypedRateLimitingInterface[string]

	mu sync.Mutex
	// unschedulable holds the pods waiting for a backoff, with what their
	// last attempt was made of (nil after a failed binding), so that a
	// cluster event can retry just those it may help (kube-scheduler's
	// queueing hints).
	unschedulable map[string]*podSchedInfo
}

func newSchedQueue(initial, maxBackoff time.Duration) *schedQueue {
	return &schedQueue{
		wq: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](initial, maxBackoff),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "scheduler"}),
		unschedulable: map[string]*podSchedInfo{},
	}
}

// add queues a pod now.
func (q *schedQueue) add(key string) { q.wq.Add(key) }

// backoff queues a pod that could not be scheduled after its next backoff,
// and keeps it for moveIf until then.
func (q *schedQueue) backoff(key string, p *podSchedInfo) {
	q.mu.Lock()
	q.unschedulable[key] = p
	q.mu.Unlock()
	q.wq.AddRateLimited(key)
}

// moveIf queues now the waiting pods for which may returns true (and those
// with nothing to judge by): something changed that may let them fit.
// Their backoff keeps growing if they still do not.
func (q *schedQueue) moveIf(may func(*podSchedInfo) bool) {
	var keys []string
	q.mu.Lock()
	for k, p := range q.unschedulable {
		if p == nil || may(p) {
			keys = append(keys, k)
			delete(q.unschedulable, k)
		}
	}
	q.mu.Unlock()
	for _, k := range keys {
		q.wq.Add(k)
	}
}

// forget ends a pod's backoff (scheduled, gone, or no longer ours).
func (q *schedQueue) forget(key string) {
	q.mu.Lock()
	delete(q.unschedulable, key)
	q.mu.Unlock()
	q.wq.Forget(key)
}

// pending is the number of pods waiting for a backoff or a cluster event.
func (q *schedQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.unschedulable)
}
