package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"synod/components/controller"
)

// Condition messages, as Kubernetes writes them.
const (
	msgBackoffLimit = "Job has reached the specified backoff limit"
	msgDeadline     = "Job was active longer than specified deadline"
	msgCompletions  = "Reached expected number of succeeded pods"
)

// sync brings one job a step closer to its spec and records its status. It
// returns how soon the job wants another look even without events (pod
// backoff, active deadline).
func (jc *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pods := jc.podsOf(key)
	job, err := jc.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// Nobody will count the pods of a deleted job: let them go.
		jc.creates.Forget(key)
		jc.deletes.forget(key)
		jc.backoffs.forget(key)
		_, err := jc.removeFinalizers(ctx, key, pods)
		return 0, err
	}
	if err != nil {
		return 0, err
	}
	var mine, strays []*v1.Pod
	for _, p := range pods {
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == job.UID {
			mine = append(mine, p)
		} else {
			strays = append(strays, p) // an earlier job of the same name
		}
	}
	_, strayErr := jc.removeFinalizers(ctx, key, strays)

	if finishedCondition(job) != nil {
		// Every pod was counted before the final condition; only loose
		// ends remain.
		_, err := jc.removeFinalizers(ctx, key, mine)
		return 0, errors.Join(strayErr, err)
	}
	if !jc.creates.Satisfied(key) || !jc.deletes.satisfied(key) {
		return 0, strayErr // the pod events bring the key back
	}
	after, err := jc.syncJob(ctx, key, job, mine)
	return after, errors.Join(strayErr, err)
}

func (jc *Controller) syncJob(ctx context.Context, key string, job *batchv1.Job, pods []*v1.Pod) (time.Duration, error) {
	now := jc.now()
	st := job.Status.DeepCopy()
	unc := uncountedOf(job)
	suspended := job.Spec.Suspend != nil && *job.Spec.Suspend
	indexed := isIndexed(job)

	active := activePods(pods)
	// Pods that finished (or were deleted) since the last count.
	var newSucceeded, newFailed, dropped []*v1.Pod
	for _, p := range pods {
		if !hasFinalizer(p) || jc.finalizers.pending(key, p.UID) || unc.has(p.UID) {
			continue
		}
		switch {
		case p.Status.Phase == v1.PodSucceeded:
			newSucceeded = append(newSucceeded, p)
		case p.Status.Phase == v1.PodFailed:
			newFailed = append(newFailed, p)
		case p.DeletionTimestamp != nil && suspended:
			dropped = append(dropped, p) // stopped by suspend, not a failure
		case p.DeletionTimestamp != nil:
			newFailed = append(newFailed, p)
		}
	}
	jc.backoffs.update(key, newSucceeded, newFailed, now)

	var completed indexSet
	succeeded := st.Succeeded + int32(unc.succeeded.Len()+len(newSucceeded))
	if indexed {
		completed = parseIndexSet(st.CompletedIndexes, *job.Spec.Completions)
		for _, p := range newSucceeded {
			if i := podIndex(p); i >= 0 && i < int(*job.Spec.Completions) {
				completed.add(i)
			}
		}
		succeeded = int32(completed.len())
	}
	failed := st.Failed + int32(unc.failed.Len()+len(newFailed))

	if !suspended && st.StartTime == nil {
		st.StartTime = &metav1.Time{Time: now}
	}
	jc.suspendCondition(job, st, suspended, now)

	target := targetCondition(st)
	if target == nil {
		reason, msg, ctype := "", "", batchv1.JobFailureTarget
		switch {
		case failed > backoffLimit(job) || pastBackoffLimitOnFailure(job, active):
			reason, msg = batchv1.JobReasonBackoffLimitExceeded, msgBackoffLimit
		case !suspended && pastDeadline(job, st, now):
			reason, msg = batchv1.JobReasonDeadlineExceeded, msgDeadline
		case successCriteriaMet(job, succeeded, len(active)):
			reason, msg, ctype = batchv1.JobReasonCompletionsReached, msgCompletions, batchv1.JobSuccessCriteriaMet
		}
		if reason != "" {
			setCondition(st, ctype, v1.ConditionTrue, reason, msg, now)
			target = targetCondition(st)
			jc.log.Info("job finishing", "job", key, "condition", ctype, "reason", reason, "succeeded", succeeded, "failed", failed)
		}
	}

	var requeue time.Duration
	var manageErr error
	activeCount := int32(len(active))
	switch {
	case target != nil:
		// The job is decided: what still runs is stopped and counted as
		// failed, as Kubernetes does.
		for _, p := range active {
			if hasFinalizer(p) && !jc.finalizers.pending(key, p.UID) && !unc.has(p.UID) {
				newFailed = append(newFailed, p)
			}
		}
		manageErr = jc.deletePods(ctx, key, job, active)
		activeCount = 0
	case suspended:
		manageErr = jc.deletePods(ctx, key, job, active)
		activeCount = 0
	case job.DeletionTimestamp != nil:
		// Being deleted: no new pods.
	default:
		activeCount, requeue, manageErr = jc.manage(ctx, key, job, active, succeeded, completed, now)
		if d := deadlineIn(job, st, now); d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}

	// First write: the newly finished pods join uncountedTerminatedPods
	// before their finalizers go, so none is lost or counted twice.
	for _, p := range newSucceeded {
		unc.succeeded.Insert(p.UID)
	}
	for _, p := range newFailed {
		unc.failed.Insert(p.UID)
	}
	if indexed {
		st.CompletedIndexes = completed.String()
	}
	ready, terminating := int32(0), int32(0)
	if target == nil && !suspended {
		for _, p := range active {
			if controller.IsPodReady(p) {
				ready++
			}
		}
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil && p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed {
			terminating++
		}
	}
	st.Active, st.Ready, st.Terminating = activeCount, ptr.To(ready), ptr.To(terminating)
	st.UncountedTerminatedPods = unc.status()
	job, err := jc.writeStatus(ctx, job, st)
	if err != nil {
		return 0, errors.Join(manageErr, err)
	}

	// Then the finalizers, then the counters.
	present := sets.New[types.UID]()
	var release []*v1.Pod
	for _, p := range pods {
		present.Insert(p.UID)
		if unc.has(p.UID) {
			release = append(release, p)
		}
	}
	release = append(release, dropped...)
	done, relErr := jc.removeFinalizers(ctx, key, release)
	for _, uid := range sets.List(unc.succeeded) {
		if done.Has(uid) || !present.Has(uid) {
			unc.succeeded.Delete(uid)
			st.Succeeded++
		}
	}
	for _, uid := range sets.List(unc.failed) {
		if done.Has(uid) || !present.Has(uid) {
			unc.failed.Delete(uid)
			st.Failed++
		}
	}
	if indexed {
		st.Succeeded = int32(completed.len())
	}
	st.UncountedTerminatedPods = unc.status()

	if target != nil && unc.len() == 0 && activeCount == 0 && allReleased(pods, done, key, jc.finalizers) {
		jc.finish(job, st, *target, now)
	}
	if _, err := jc.writeStatus(ctx, job, st); err != nil {
		return 0, errors.Join(manageErr, relErr, err)
	}
	return requeue, errors.Join(manageErr, relErr)
}

// allReleased: no pod of the job still carries the tracking finalizer.
func allReleased(pods []*v1.Pod, done sets.Set[types.UID], key string, pending *uidExpectations) bool {
	for _, p := range pods {
		if hasFinalizer(p) && !done.Has(p.UID) && !pending.pending(key, p.UID) {
			return false
		}
	}
	return true
}

// finish adds the final condition (Complete or Failed) that the target
// condition announced, with its event.
func (jc *Controller) finish(job *batchv1.Job, st *batchv1.JobStatus, target batchv1.JobCondition, now time.Time) {
	if target.Type == batchv1.JobSuccessCriteriaMet {
		setCondition(st, batchv1.JobComplete, v1.ConditionTrue, target.Reason, target.Message, now)
		st.CompletionTime = &metav1.Time{Time: now}
		jc.recorder.Event(job, v1.EventTypeNormal, "Completed", "Job completed")
		jc.log.Info("job completed", "job", controller.Key(job), "succeeded", st.Succeeded)
		return
	}
	setCondition(st, batchv1.JobFailed, v1.ConditionTrue, target.Reason, target.Message, now)
	jc.recorder.Event(job, v1.EventTypeWarning, target.Reason, target.Message)
	jc.log.Info("job failed", "job", controller.Key(job), "reason", target.Reason, "failed", st.Failed)
}

// suspendCondition keeps the Suspended condition in line with
// spec.suspend; resuming restarts the clock of activeDeadlineSeconds.
func (jc *Controller) suspendCondition(job *batchv1.Job, st *batchv1.JobStatus, suspended bool, now time.Time) {
	c := findCondition(st, batchv1.JobSuspended)
	switch {
	case suspended && (c == nil || c.Status != v1.ConditionTrue):
		setCondition(st, batchv1.JobSuspended, v1.ConditionTrue, "JobSuspended", "Job suspended", now)
		jc.recorder.Event(job, v1.EventTypeNormal, "Suspended", "Job suspended")
	case !suspended && c != nil && c.Status == v1.ConditionTrue:
		setCondition(st, batchv1.JobSuspended, v1.ConditionFalse, "JobResumed", "Job resumed", now)
		st.StartTime = &metav1.Time{Time: now}
		jc.recorder.Event(job, v1.EventTypeNormal, "Resumed", "Job resumed")
	}
}

// writeStatus stores st if it differs from the job's status. The job's
// resourceVersion guards the write: a stale cache fails with a conflict
// and the job is synced again, never counted twice.
func (jc *Controller) writeStatus(ctx context.Context, job *batchv1.Job, st *batchv1.JobStatus) (*batchv1.Job, error) {
	if equality.Semantic.DeepEqual(job.Status, *st) {
		return job, nil
	}
	cp := job.DeepCopy()
	cp.Status = *st.DeepCopy()
	out, err := jc.client.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return job, fmt.Errorf("job: update status of %s: %w", controller.Key(job), err)
	}
	return out, nil
}

func activePods(pods []*v1.Pod) []*v1.Pod {
	var out []*v1.Pod
	for _, p := range pods {
		if controller.IsPodActive(p) {
			out = append(out, p)
		}
	}
	return out
}

func isIndexed(job *batchv1.Job) bool {
	return job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion && job.Spec.Completions != nil
}

// successCriteriaMet: enough completions, or (without completions, a work
// queue) one success and nothing left running.
func successCriteriaMet(job *batchv1.Job, succeeded int32, active int) bool {
	if job.Spec.Completions != nil {
		return succeeded >= *job.Spec.Completions
	}
	return succeeded > 0 && active == 0
}

// pastBackoffLimitOnFailure counts container restarts of restartPolicy
// OnFailure pods against backoffLimit, as Kubernetes does.
func pastBackoffLimitOnFailure(job *batchv1.Job, active []*v1.Pod) bool {
	if job.Spec.Template.Spec.RestartPolicy != v1.RestartPolicyOnFailure {
		return false
	}
	var restarts int32
	for _, p := range active {
		for _, cs := range p.Status.InitContainerStatuses {
			restarts += cs.RestartCount
		}
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
	}
	if backoffLimit(job) == 0 {
		return restarts > 0
	}
	return restarts >= backoffLimit(job)
}

// backoffLimit is spec.backoffLimit (defaulted by the API to 6).
func backoffLimit(job *batchv1.Job) int32 {
	if job.Spec.BackoffLimit == nil {
		return 6
	}
	return *job.Spec.BackoffLimit
}

func pastDeadline(job *batchv1.Job, st *batchv1.JobStatus, now time.Time) bool {
	return job.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil &&
		now.Sub(st.StartTime.Time) >= time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second
}

// deadlineIn is how long until the active deadline passes (0: none).
func deadlineIn(job *batchv1.Job, st *batchv1.JobStatus, now time.Time) time.Duration {
	if job.Spec.ActiveDeadlineSeconds == nil || st.StartTime == nil {
		return 0
	}
	return max(st.StartTime.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second).Sub(now), time.Millisecond)
}

func findCondition(st *batchv1.JobStatus, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setCondition adds or updates a condition; the transition time moves only
// when the status does.
func setCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, status v1.ConditionStatus, reason, msg string, now time.Time) {
	at := metav1.Time{Time: now}
	if c := findCondition(st, t); c != nil {
		if c.Status != status {
			c.LastTransitionTime = at
		}
		c.Status, c.Reason, c.Message, c.LastProbeTime = status, reason, msg, at
		return
	}
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t, Status: status, Reason: reason, Message: msg,
		LastProbeTime: at, LastTransitionTime: at})
}

// targetCondition is the FailureTarget or SuccessCriteriaMet condition
// that decided the job, if any.
func targetCondition(st *batchv1.JobStatus) *batchv1.JobCondition {
	for _, t := range []batchv1.JobConditionType{batchv1.JobFailureTarget, batchv1.JobSuccessCriteriaMet} {
		if c := findCondition(st, t); c != nil && c.Status == v1.ConditionTrue {
			return c
		}
	}
	return nil
}

// finishedCondition is the job's Complete or Failed condition, if true.
func finishedCondition(job *batchv1.Job) *batchv1.JobCondition {
	for _, t := range []batchv1.JobConditionType{batchv1.JobComplete, batchv1.JobFailed} {
		if c := findCondition(&job.Status, t); c != nil && c.Status == v1.ConditionTrue {
			return c
		}
	}
	return nil
}
