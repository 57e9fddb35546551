package job

import (
	"context"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// uidExpectations remembers, per job key, pods for which a write was sent
// whose effect the cache has not shown yet (Kubernetes'
// UIDTrackingControllerExpectations and finalizerExpectations).
type uidExpectations struct {
	mu  sync.Mutex
	all map[string]sets.Set[types.UID]
}

func newUIDExpectations() *uidExpectations {
	return &uidExpectations{all: map[string]sets.Set[types.UID]{}}
}

func (e *uidExpectations) expect(key string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.all[key]
	if s == nil {
		s = sets.New[types.UID]()
		e.all[key] = s
	}
	s.Insert(uid)
}

func (e *uidExpectations) observed(key string, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.all[key]; s != nil {
		s.Delete(uid)
		if s.Len() == 0 {
			delete(e.all, key)
		}
	}
}

func (e *uidExpectations) pending(key string, uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.all[key].Has(uid)
}

func (e *uidExpectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.all[key].Len() == 0
}

func (e *uidExpectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.all, key)
}

// uncounted is status.uncountedTerminatedPods as sets.
type uncounted struct {
	succeeded, failed sets.Set[types.UID]
}

func uncountedOf(job *batchv1.Job) uncounted {
	u := uncounted{succeeded: sets.New[types.UID](), failed: sets.New[types.UID]()}
	if s := job.Status.UncountedTerminatedPods; s != nil {
		u.succeeded.Insert(s.Succeeded...)
		u.failed.Insert(s.Failed...)
	}
	return u
}

func (u uncounted) has(uid types.UID) bool { return u.succeeded.Has(uid) || u.failed.Has(uid) }
func (u uncounted) len() int               { return u.succeeded.Len() + u.failed.Len() }

// status renders the sets sorted, so equal sets compare equal.
func (u uncounted) status() *batchv1.UncountedTerminatedPods {
	return &batchv1.UncountedTerminatedPods{Succeeded: sets.List(u.succeeded), Failed: sets.List(u.failed)}
}

// removeFinalizerPatch drops only the job-tracking finalizer, leaving any
// other (the garbage collector's, a user's) in place.
var removeFinalizerPatch = []byte(fmt.Sprintf(`{"metadata":{"$deleteFromPrimitiveList/finalizers":[%q]}}`, batchv1.JobTrackingFinalizer))

// removeFinalizers strips the tracking finalizer from pods. It returns the
// UIDs done (removed now, or gone already) and the first error.
func (jc *Controller) removeFinalizers(ctx context.Context, key string, pods []*v1.Pod) (sets.Set[types.UID], error) {
	done := sets.New[types.UID]()
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, p := range pods {
		if !hasFinalizer(p) || jc.finalizers.pending(key, p.UID) {
			done.Insert(p.UID)
			continue
		}
		jc.finalizers.expect(key, p.UID)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := jc.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, removeFinalizerPatch, metav1.PatchOptions{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil && !apierrors.IsNotFound(err) {
				jc.finalizers.observed(key, p.UID)
				if firstErr == nil {
					firstErr = fmt.Errorf("job: remove finalizer of pod %s/%s: %w", p.Namespace, p.Name, err)
				}
				return
			}
			done.Insert(p.UID)
		}()
	}
	wg.Wait()
	return done, firstErr
}

// backoffRecord is Kubernetes' pod-failure backoff state of one job:
// failures since the last success and when the last one happened.
type backoffRecord struct {
	failures    int
	lastFailure time.Time
}

type backoffStore struct {
	mu  sync.Mutex
	all map[string]backoffRecord
}

func newBackoffStore() *backoffStore { return &backoffStore{all: map[string]backoffRecord{}} }

// update folds newly finished pods into key's record. Failures are timed
// when this controller sees them: the pods' own finish times have whole
// seconds only, too coarse for short backoffs.
func (s *backoffStore) update(key string, succeeded, failed []*v1.Pod, now time.Time) {
	if len(succeeded) == 0 && len(failed) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.all[key]
	if len(succeeded) > 0 {
		r = backoffRecord{}
	}
	if len(failed) > 0 {
		r.failures += len(failed)
		r.lastFailure = now
	}
	s.all[key] = r
}

// remaining is how long key must wait before it creates a pod again:
// base * 2^(failures-1), at most max, counted from the last failure.
func (s *backoffStore) remaining(key string, base, limit time.Duration, now time.Time) time.Duration {
	s.mu.Lock()
	r := s.all[key]
	s.mu.Unlock()
	if r.failures == 0 {
		return 0
	}
	d := base
	for i := 1; i < r.failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if left := d - now.Sub(r.lastFailure); left > 0 {
		return left
	}
	return 0
}

func (s *backoffStore) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.all, key)
}
