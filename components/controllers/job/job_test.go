package job

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"synod/components/controller"
	"synod/internal/hollow"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// start runs the job controller (pod-failure backoff base `backoff`, 0 for
// Kubernetes' 10s) against a fresh cluster with one hollow node, n1.
func start(t *testing.T, backoff time.Duration) kubernetes.Interface {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	testcluster.RunControllers(t, cc, func(cc *controller.Context) (controller.Runner, error) {
		r, err := New(cc)
		if err == nil && backoff > 0 {
			r.(*Controller).backoffBase = backoff
		}
		return r, err
	})
	k, err := hollow.Start(context.Background(), c.Client, []hollow.NodeSpec{{Name: "n1"}}, hollow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return c.Client
}

// newJob is a restartPolicy Never job whose pods are bound to n1 (there is
// no scheduler here) and run for runFor, then exit with code.
func newJob(name string, completions *int32, parallelism int32, runFor string, code int) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: batchv1.JobSpec{
			Completions: completions, Parallelism: ptr.To(parallelism),
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
					hollow.AnnotationRunFor: runFor, hollow.AnnotationExitCode: fmt.Sprint(code)}},
				Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, NodeName: "n1",
					Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

func create(t *testing.T, client kubernetes.Interface, job *batchv1.Job) *batchv1.Job {
	t.Helper()
	out, err := client.BatchV1().Jobs(job.Namespace).Create(context.Background(), job, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitJob polls the job until done says so.
func waitJob(t *testing.T, client kubernetes.Interface, name string, timeout time.Duration, what string, done func(*batchv1.Job) bool) *batchv1.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := client.BatchV1().Jobs("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if done(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: no %s after %s; status %+v", name, what, timeout, j.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasCondition(j *batchv1.Job, t batchv1.JobConditionType, reason string) bool {
	c := findCondition(&j.Status, t)
	return c != nil && c.Status == v1.ConditionTrue && (reason == "" || c.Reason == reason)
}

// podWatch follows a job's pods as the API orders their changes.
type podWatch struct {
	mu        sync.Mutex
	pods      map[string]*v1.Pod
	added     map[string]time.Time // when each pod first appeared
	maxActive int
}

func watchPods(t *testing.T, client kubernetes.Interface, jobName string) *podWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + jobName})
	if err != nil {
		t.Fatal(err)
	}
	pw := &podWatch{pods: map[string]*v1.Pod{}, added: map[string]time.Time{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*v1.Pod)
			if !ok {
				continue
			}
			pw.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(pw.pods, p.Name)
			} else {
				pw.pods[p.Name] = p
				if _, seen := pw.added[p.Name]; !seen {
					pw.added[p.Name] = time.Now()
				}
			}
			active := 0
			for _, q := range pw.pods {
				if controller.IsPodActive(q) {
					active++
				}
			}
			pw.maxActive = max(pw.maxActive, active)
			pw.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		w.Stop()
		<-done
	})
	return pw
}

func (pw *podWatch) stats() (created, maxActive int) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return len(pw.added), pw.maxActive
}

func jobEvents(t *testing.T, client kubernetes.Interface, name, reason string) []v1.Event {
	t.Helper()
	list, err := client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": name, "reason": reason}.String()})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitEvent waits for an event of the job-controller on name.
func waitEvent(t *testing.T, client kubernetes.Interface, name, reason, message string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range jobEvents(t, client, name, reason) {
			if e.Source.Component == component && (message == "" || e.Message == message) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event %q on %s", reason, message, name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finalizersGone waits until no pod of the job carries the tracking
// finalizer (the API deletes the ones marked for deletion then).
func finalizersGone(t *testing.T, client kubernetes.Interface, jobName string) []v1.Pod {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + jobName})
		if err != nil {
			t.Fatal(err)
		}
		left := 0
		for i := range list.Items {
			if hasFinalizer(&list.Items[i]) {
				left++
			}
		}
		if left == 0 {
			return list.Items
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pods of %s still carry %s", left, jobName, batchv1.JobTrackingFinalizer)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCompletionsAndParallelism: 5 completions, 2 at a time; never more
// than 2 active; SuccessCriteriaMet then Complete; every pod counted once.
func TestCompletionsAndParallelism(t *testing.T) {
	client := start(t, 0)
	pw := watchPods(t, client, "work")
	job := create(t, client, newJob("work", ptr.To[int32](5), 2, "300ms", 0))
	j := waitJob(t, client, "work", 20*time.Second, "Complete", func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobComplete, "") })
	if j.Status.Succeeded != 5 || j.Status.Failed != 0 || j.Status.Active != 0 || j.Status.StartTime == nil || j.Status.CompletionTime == nil {
		t.Fatalf("status %+v", j.Status)
	}
	if u := j.Status.UncountedTerminatedPods; u != nil && len(u.Succeeded)+len(u.Failed) > 0 {
		t.Fatalf("uncounted pods left: %+v", u)
	}
	if !hasCondition(j, batchv1.JobSuccessCriteriaMet, batchv1.JobReasonCompletionsReached) ||
		!hasCondition(j, batchv1.JobComplete, batchv1.JobReasonCompletionsReached) || j.Status.Conditions[0].Type != batchv1.JobSuccessCriteriaMet {
		t.Fatalf("conditions %+v", j.Status.Conditions)
	}
	created, maxActive := pw.stats()
	if created != 5 || maxActive > 2 || maxActive < 2 {
		t.Fatalf("%d pods created, at most %d active at once; want 5 and 2", created, maxActive)
	}
	for _, p := range finalizersGone(t, client, "work") {
		for _, l := range []string{batchv1.ControllerUidLabel, "controller-uid"} {
			if p.Labels[l] != string(job.UID) {
				t.Errorf("pod %s label %s = %q", p.Name, l, p.Labels[l])
			}
		}
		for _, l := range []string{batchv1.JobNameLabel, "job-name"} {
			if p.Labels[l] != "work" {
				t.Errorf("pod %s label %s = %q", p.Name, l, p.Labels[l])
			}
		}
		if ref := metav1.GetControllerOf(&p); ref == nil || ref.UID != job.UID {
			t.Errorf("pod %s controller %+v", p.Name, ref)
		}
	}
	if n := len(jobEvents(t, client, "work", "SuccessfulCreate")); n == 0 {
		t.Error("no SuccessfulCreate events")
	}
	waitEvent(t, client, "work", "Completed", "Job completed")
}

// TestBackoffLimit: failing pods are replaced after a doubling backoff
// until failures exceed backoffLimit; then FailureTarget, then Failed.
func TestBackoffLimit(t *testing.T) {
	const base = 300 * time.Millisecond
	client := start(t, base)
	pw := watchPods(t, client, "flaky")
	job := newJob("flaky", ptr.To[int32](1), 1, "100ms", 3)
	job.Spec.BackoffLimit = ptr.To[int32](2)
	create(t, client, job)
	j := waitJob(t, client, "flaky", 20*time.Second, "Failed", func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobFailed, "") })
	if j.Status.Failed != 3 || j.Status.Succeeded != 0 || j.Status.Active != 0 {
		t.Fatalf("status %+v", j.Status)
	}
	if !hasCondition(j, batchv1.JobFailureTarget, batchv1.JobReasonBackoffLimitExceeded) ||
		!hasCondition(j, batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded) || j.Status.Conditions[0].Type != batchv1.JobFailureTarget {
		t.Fatalf("conditions %+v", j.Status.Conditions)
	}
	if c := findCondition(&j.Status, batchv1.JobFailed); c.Message != msgBackoffLimit {
		t.Errorf("Failed message %q", c.Message)
	}
	// The replacements waited out the backoff: base after the first
	// failure, twice that after the second.
	pw.mu.Lock()
	var times []time.Time
	for _, at := range pw.added {
		times = append(times, at)
	}
	pw.mu.Unlock()
	if len(times) != 3 {
		t.Fatalf("%d pods created, want 3", len(times))
	}
	sortTimes(times)
	// (A pod's run time counts from its startTime, which has whole
	// seconds only, so it may be close to nothing.)
	if gap := times[1].Sub(times[0]); gap < base-50*time.Millisecond {
		t.Errorf("second pod %s after the first, want >= %s", gap, base)
	}
	if gap := times[2].Sub(times[1]); gap < 2*base-50*time.Millisecond {
		t.Errorf("third pod %s after the second, want >= %s", gap, 2*base)
	}
	finalizersGone(t, client, "flaky")
	waitEvent(t, client, "flaky", batchv1.JobReasonBackoffLimitExceeded, msgBackoffLimit)
}

func sortTimes(ts []time.Time) {
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			if ts[j].Before(ts[i]) {
				ts[i], ts[j] = ts[j], ts[i]
			}
		}
	}
}

// TestDefaultBackoff: with Kubernetes' 10s backoff, a failure holds back
// the replacement; two pods failing together exceed backoffLimit 1 at once.
func TestDefaultBackoff(t *testing.T) {
	client := start(t, 0)
	pw := watchPods(t, client, "pair")
	job := newJob("pair", ptr.To[int32](4), 2, "200ms", 1)
	job.Spec.BackoffLimit = ptr.To[int32](1)
	create(t, client, job)
	j := waitJob(t, client, "pair", 8*time.Second, "Failed", func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobFailed, "") })
	if j.Status.Failed != 2 || !hasCondition(j, batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded) {
		t.Fatalf("status %+v", j.Status)
	}
	if created, _ := pw.stats(); created != 2 {
		t.Fatalf("%d pods created; the 10s backoff should have held back any replacement", created)
	}
}

// TestActiveDeadline: pods that run too long are stopped and the job fails
// with DeadlineExceeded.
func TestActiveDeadline(t *testing.T) {
	client := start(t, 0)
	job := newJob("slow", ptr.To[int32](2), 2, "1h", 0)
	job.Spec.ActiveDeadlineSeconds = ptr.To[int64](1)
	create(t, client, job)
	j := waitJob(t, client, "slow", 10*time.Second, "Failed", func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobFailed, "") })
	// Both times have whole seconds, as in Kubernetes.
	if c := findCondition(&j.Status, batchv1.JobFailureTarget); c == nil || c.LastTransitionTime.Sub(j.Status.StartTime.Time) < time.Second {
		t.Fatalf("deadline hit before 1s: started %v, %+v", j.Status.StartTime, c)
	}
	if !hasCondition(j, batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded) || !hasCondition(j, batchv1.JobFailureTarget, batchv1.JobReasonDeadlineExceeded) {
		t.Fatalf("conditions %+v", j.Status.Conditions)
	}
	if j.Status.Active != 0 || j.Status.Failed != 2 || j.Status.CompletionTime != nil {
		t.Fatalf("status %+v", j.Status)
	}
	// The running pods were deleted.
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=slow"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pods left after the deadline", len(list.Items))
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitEvent(t, client, "slow", batchv1.JobReasonDeadlineExceeded, msgDeadline)
}

// TestIndexed: each index gets its pod (annotation, label, hostname, env)
// and completedIndexes covers them all.
func TestIndexed(t *testing.T) {
	client := start(t, 0)
	pw := watchPods(t, client, "idx")
	job := newJob("idx", ptr.To[int32](3), 3, "200ms", 0)
	job.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
	create(t, client, job)
	j := waitJob(t, client, "idx", 15*time.Second, "Complete", func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobComplete, "") })
	if j.Status.CompletedIndexes != "0-2" || j.Status.Succeeded != 3 {
		t.Fatalf("status %+v", j.Status)
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	seen := map[string]bool{}
	for name, p := range pw.pods {
		idx := p.Annotations[batchv1.JobCompletionIndexAnnotation]
		seen[idx] = true
		if p.Labels[batchv1.JobCompletionIndexAnnotation] != idx || p.Spec.Hostname != "idx-"+idx || !strings.HasPrefix(name, "idx-"+idx+"-") {
			t.Errorf("pod %s: index %q label %q hostname %q", name, idx, p.Labels[batchv1.JobCompletionIndexAnnotation], p.Spec.Hostname)
		}
		if env := p.Spec.Containers[0].Env; len(env) != 1 || env[0].Name != completionIndexEnv {
			t.Errorf("pod %s env %+v", name, env)
		}
	}
	if len(seen) != 3 || len(pw.added) != 3 {
		t.Errorf("indexes %v from %d pods", seen, len(pw.added))
	}
}

// TestSuspendAndDeletedPod: a suspended job runs nothing; resumed, it runs;
// a running pod deleted by hand still counts (as failed) thanks to the
// tracking finalizer, and is replaced.
func TestSuspendAndDeletedPod(t *testing.T) {
	client := start(t, 100*time.Millisecond)
	ctx := context.Background()
	pw := watchPods(t, client, "later")
	job := newJob("later", ptr.To[int32](1), 1, "1h", 0)
	job.Spec.Suspend = ptr.To(true)
	create(t, client, job)
	j := waitJob(t, client, "later", 5*time.Second, "Suspended", func(j *batchv1.Job) bool { return hasCondition(j, batchv1.JobSuspended, "JobSuspended") })
	if j.Status.StartTime != nil || j.Status.Active != 0 {
		t.Fatalf("suspended job status %+v", j.Status)
	}
	time.Sleep(300 * time.Millisecond)
	if created, _ := pw.stats(); created != 0 {
		t.Fatalf("suspended job created %d pods", created)
	}
	if _, err := client.BatchV1().Jobs("default").Patch(ctx, "later", types.MergePatchType, []byte(`{"spec":{"suspend":false}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, client, "later", 5*time.Second, "a ready pod", func(j *batchv1.Job) bool { return j.Status.Ready != nil && *j.Status.Ready == 1 })
	if c := findCondition(&j.Status, batchv1.JobSuspended); c == nil || c.Status != v1.ConditionFalse || c.Reason != "JobResumed" || j.Status.StartTime == nil {
		t.Fatalf("resumed job status %+v", j.Status)
	}
	waitEvent(t, client, "later", "Resumed", "Job resumed")

	list, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=later"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("pods of resumed job: %v %v", list, err)
	}
	victim := list.Items[0]
	if err := client.CoreV1().Pods("default").Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, client, "later", 5*time.Second, "the deleted pod counted and replaced", func(j *batchv1.Job) bool {
		return j.Status.Failed == 1 && j.Status.Active == 1
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := client.CoreV1().Pods("default").Get(ctx, victim.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted pod still there: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Deleting the job releases its pods' finalizers.
	if err := client.BatchV1().Jobs("default").Delete(ctx, "later", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	finalizersGone(t, client, "later")
}
