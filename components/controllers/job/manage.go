package job

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"synod/components/controller"
)

// completionIndexEnv is the variable Indexed pods find their index in.
const completionIndexEnv = "JOB_COMPLETION_INDEX"

// manage creates or deletes pods so that the right number is active. It
// returns the number active afterwards and when to look again (a pending
// pod-failure backoff).
func (jc *Controller) manage(ctx context.Context, key string, job *batchv1.Job, active []*v1.Pod, succeeded int32, completed indexSet, now time.Time) (int32, time.Duration, error) {
	parallelism := int32(1)
	if job.Spec.Parallelism != nil {
		parallelism = *job.Spec.Parallelism
	}
	if isIndexed(job) {
		return jc.manageIndexed(ctx, key, job, active, parallelism, completed, now)
	}
	n := int32(len(active))
	want := parallelism
	switch {
	case job.Spec.Completions != nil:
		want = max(0, min(parallelism, *job.Spec.Completions-succeeded))
	case succeeded > 0:
		// A work queue with one success: no new pods, let the rest end.
		want = min(n, parallelism)
	}
	if n > want {
		victims := append([]*v1.Pod(nil), active...)
		sort.SliceStable(victims, func(i, j int) bool { return deleteFirst(victims[i], victims[j]) })
		err := jc.deletePods(ctx, key, job, victims[:n-want])
		return want, 0, err
	}
	if n == want {
		return n, 0, nil
	}
	if wait := jc.backoffs.remaining(key, jc.backoffBase, jc.backoffMax, now); wait > 0 {
		return n, wait, nil
	}
	indexes := make([]int, want-n)
	for i := range indexes {
		indexes[i] = -1
	}
	created, err := jc.createPods(ctx, key, job, indexes)
	return n + int32(created), 0, err
}

// manageIndexed keeps one active pod for each of the lowest indexes not yet
// completed, up to parallelism.
func (jc *Controller) manageIndexed(ctx context.Context, key string, job *batchv1.Job, active []*v1.Pod, parallelism int32, completed indexSet, now time.Time) (int32, time.Duration, error) {
	completions := int(*job.Spec.Completions)
	byIndex := map[int]*v1.Pod{}
	var victims []*v1.Pod
	sorted := append([]*v1.Pod(nil), active...)
	// Of pods sharing an index the one deleteFirst ranks last is kept.
	sort.SliceStable(sorted, func(i, j int) bool { return deleteFirst(sorted[j], sorted[i]) })
	for _, p := range sorted {
		i := podIndex(p)
		switch {
		case i < 0 || i >= completions || completed.has(i):
			victims = append(victims, p)
		case byIndex[i] != nil:
			victims = append(victims, p)
		default:
			byIndex[i] = p
		}
	}
	want := max(0, min(int(parallelism), completions-completed.len()))
	if len(byIndex) > want {
		kept := make([]int, 0, len(byIndex))
		for i := range byIndex {
			kept = append(kept, i)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(kept)))
		for _, i := range kept[:len(byIndex)-want] {
			victims = append(victims, byIndex[i])
			delete(byIndex, i)
		}
	}
	var err error
	if len(victims) > 0 {
		err = jc.deletePods(ctx, key, job, victims)
	}
	n := int32(len(byIndex))
	if len(byIndex) >= want || err != nil {
		return n, 0, err
	}
	if wait := jc.backoffs.remaining(key, jc.backoffBase, jc.backoffMax, now); wait > 0 {
		return n, wait, nil
	}
	var missing []int
	for i := 0; i < completions && len(missing) < want-len(byIndex); i++ {
		if !completed.has(i) && byIndex[i] == nil {
			missing = append(missing, i)
		}
	}
	created, err := jc.createPods(ctx, key, job, missing)
	return n + int32(created), 0, err
}

// deleteFirst orders pods the way Kubernetes picks victims: unscheduled
// before scheduled, pending before running, not ready before ready, newer
// before older.
func deleteFirst(a, b *v1.Pod) bool {
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if (a.Status.Phase == v1.PodRunning) != (b.Status.Phase == v1.PodRunning) {
		return a.Status.Phase != v1.PodRunning
	}
	if controller.IsPodReady(a) != controller.IsPodReady(b) {
		return !controller.IsPodReady(a)
	}
	return b.CreationTimestamp.Before(&a.CreationTimestamp)
}

// createPods creates one pod per entry of indexes (-1: no index) in
// batches of 1, 2, 4, ... (Kubernetes' slow start), stopping at the first
// batch with an error. It returns how many were created.
func (jc *Controller) createPods(ctx context.Context, key string, job *batchv1.Job, indexes []int) (int, error) {
	jc.creates.Expect(key, len(indexes), 0)
	created := 0
	for pos, batch := 0, 1; pos < len(indexes); batch *= 2 {
		size := min(batch, len(indexes)-pos)
		errs := make([]error, size)
		var wg sync.WaitGroup
		for k := range size {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[k] = jc.createPod(ctx, job, indexes[pos+k])
			}()
		}
		wg.Wait()
		pos += size
		var err error
		for _, e := range errs {
			if e != nil {
				jc.creates.Observed(key, true) // never coming
				err = errors.Join(err, e)
			} else {
				created++
			}
		}
		if err != nil {
			for range len(indexes) - pos {
				jc.creates.Observed(key, true)
			}
			return created, err
		}
	}
	return created, nil
}

func (jc *Controller) createPod(ctx context.Context, job *batchv1.Job, index int) error {
	pod := newPod(job, index)
	out, err := jc.client.CoreV1().Pods(job.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.IsAlreadyExists(err) && ctx.Err() == nil {
			jc.recorder.Eventf(job, v1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		}
		return fmt.Errorf("job: create pod for %s: %w", controller.Key(job), err)
	}
	jc.recorder.Eventf(job, v1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", out.Name)
	return nil
}

// newPod builds a pod of the job: the template, owned by the job, with the
// job labels and the tracking finalizer, and for Indexed jobs its index.
func newPod(job *batchv1.Job, index int) *v1.Pod {
	pod := controller.PodFromTemplate(&job.Spec.Template, job, batchv1.SchemeGroupVersion.WithKind("Job"))
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	for k, v := range map[string]string{
		batchv1.ControllerUidLabel: string(job.UID), "controller-uid": string(job.UID),
		batchv1.JobNameLabel: job.Name, "job-name": job.Name,
	} {
		if _, ok := pod.Labels[k]; !ok {
			pod.Labels[k] = v
		}
	}
	pod.Finalizers = append(pod.Finalizers, batchv1.JobTrackingFinalizer)
	if index < 0 {
		return pod
	}
	idx := strconv.Itoa(index)
	pod.GenerateName = controller.GeneratePrefix(job.Name + "-" + idx)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[batchv1.JobCompletionIndexAnnotation] = idx
	pod.Labels[batchv1.JobCompletionIndexAnnotation] = idx
	if pod.Spec.Hostname == "" {
		pod.Spec.Hostname = job.Name + "-" + idx
	}
	env := v1.EnvVar{Name: completionIndexEnv, ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{
		FieldPath: fmt.Sprintf("metadata.annotations['%s']", batchv1.JobCompletionIndexAnnotation)}}}
	for _, cs := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			has := false
			for _, e := range cs[i].Env {
				has = has || e.Name == completionIndexEnv
			}
			if !has {
				cs[i].Env = append(cs[i].Env, env)
			}
		}
	}
	return pod
}

// podIndex is a pod's completion index, or -1.
func podIndex(p *v1.Pod) int {
	v, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// deletePods deletes pods gracefully, expecting each deletion to show.
func (jc *Controller) deletePods(ctx context.Context, key string, job *batchv1.Job, pods []*v1.Pod) error {
	var errs []error
	for _, p := range pods {
		jc.deletes.expect(key, p.UID)
		err := jc.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			jc.deletes.observed(key, p.UID)
			if ctx.Err() == nil {
				jc.recorder.Eventf(job, v1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			}
			errs = append(errs, fmt.Errorf("job: delete pod %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		if err == nil {
			jc.recorder.Eventf(job, v1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", p.Name)
		} else {
			jc.deletes.observed(key, p.UID)
		}
	}
	return errors.Join(errs...)
}
