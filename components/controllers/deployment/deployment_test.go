package deployment

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"synod/components/controllers/replicaset"
	"synod/components/controllers/replicaset/replicasettest"
	"synod/internal/hollow"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// env is a cluster running the replicaset and deployment controllers
// in-process, three hollow nodes and a binder standing in for the
// scheduler.
type env struct {
	t      *testing.T
	client kubernetes.Interface
}

func start(t *testing.T) *env {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	// The replicaset controller's pod deletions are slow, so a rollout
	// always has deletions in flight when the deployment controller next
	// looks: counting only ReplicaSet specs would overshoot the bounds.
	rsc := testcluster.NewControllerContext(t, c)
	slow := rest.CopyConfig(c.Config)
	slow.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return slowDeletes{rt: rt, delay: 100 * time.Millisecond}
	})
	rsc.Client = kubernetes.NewForConfigOrDie(slow)
	testcluster.RunControllers(t, rsc, replicaset.New)
	testcluster.RunControllers(t, testcluster.NewControllerContext(t, c), New)
	nodes := replicasettest.StartNodes(t, c.Client, 3)
	// A small delay per binding stretches rollouts over more steps.
	replicasettest.StartBinder(t, c.Client, nodes, 5*time.Millisecond)
	return &env{t: t, client: c.Client}
}

// slowDeletes delays every DELETE request.
type slowDeletes struct {
	rt    http.RoundTripper
	delay time.Duration
}

func (s slowDeletes) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodDelete {
		time.Sleep(s.delay)
	}
	return s.rt.RoundTrip(req)
}

func (e *env) namespace(name string) string {
	e.t.Helper()
	if _, err := e.client.CoreV1().Namespaces().Create(context.Background(), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return name
}

func newDeployment(name string, n int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "busybox", Image: "busybox:1"}}},
			},
		},
	}
}

func rollingUpdate(surge, unavailable intstr.IntOrString) appsv1.DeploymentStrategy {
	return appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable}}
}

func (e *env) create(ns string, d *appsv1.Deployment) {
	e.t.Helper()
	if _, err := e.client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(ns, name string) *appsv1.Deployment {
	e.t.Helper()
	d, err := e.client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) patch(ns, name, patch string) {
	e.t.Helper()
	if _, err := e.client.AppsV1().Deployments(ns).Patch(context.Background(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) setImage(ns, name, image string) {
	e.t.Helper()
	e.patch(ns, name, fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"busybox","image":%q}]}}}}`, image))
}

// waitComplete waits until kubectl rollout status would report success.
func (e *env) waitComplete(ns, name string) *appsv1.Deployment {
	e.t.Helper()
	var d *appsv1.Deployment
	replicasettest.Poll(e.t, 30*time.Second, "rollout of "+ns+"/"+name, func() (bool, error) {
		d = e.get(ns, name)
		s, want := d.Status, *d.Spec.Replicas
		done := d.Generation <= s.ObservedGeneration && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
		return done, fmt.Errorf("generation %d, status %+v", d.Generation, s)
	})
	return d
}

// replicaSets lists the deployment's ReplicaSets, by revision.
func (e *env) replicaSets(ns string, d *appsv1.Deployment) []appsv1.ReplicaSet {
	e.t.Helper()
	list, err := e.client.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if metav1.IsControlledBy(&rs, d) {
			out = append(out, rs)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ri, _ := Revision(&out[i])
		rj, _ := Revision(&out[j])
		return ri < rj
	})
	return out
}

func (e *env) events(ns, name string) []string {
	e.t.Helper()
	list, err := e.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.Source.Component == "deployment-controller" {
			out = append(out, ev.Reason+": "+ev.Message)
		}
	}
	return out
}

func (e *env) waitEvent(ns, name, want string) {
	e.t.Helper()
	replicasettest.Poll(e.t, 10*time.Second, "event "+want, func() (bool, error) {
		evs := e.events(ns, name)
		return slices.Contains(evs, want), fmt.Errorf("events %q", evs)
	})
}

// podWatch follows every pod event of a namespace and checks an invariant
// after each one.
type podWatch struct {
	mu        sync.Mutex
	pods      map[string]*v1.Pod
	events    int
	violation string
	stopped   bool
	w         watch.Interface
	closed    chan struct{}
}

func (e *env) watchPods(ns string, check func(pods map[string]*v1.Pod) string) *podWatch {
	e.t.Helper()
	ctx := context.Background()
	list, err := e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	pw := &podWatch{pods: map[string]*v1.Pod{}, closed: make(chan struct{})}
	for i := range list.Items {
		pw.pods[list.Items[i].Name] = &list.Items[i]
	}
	if v := check(pw.pods); v != "" {
		e.t.Fatalf("invariant broken before the watch: %s", v)
	}
	pw.w, err = e.client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer close(pw.closed)
		for ev := range pw.w.ResultChan() {
			pw.mu.Lock()
			p, ok := ev.Object.(*v1.Pod)
			switch {
			case !ok:
				// Stopping the watch closes the stream under the decoder.
				if pw.violation == "" && !pw.stopped {
					pw.violation = fmt.Sprintf("watch error: %v", ev.Object)
				}
			case ev.Type == watch.Deleted:
				delete(pw.pods, p.Name)
			default:
				pw.pods[p.Name] = p
			}
			pw.events++
			if v := check(pw.pods); v != "" && pw.violation == "" {
				pw.violation = fmt.Sprintf("after event %d (%s %s): %s", pw.events, ev.Type, p.Name, v)
			}
			pw.mu.Unlock()
		}
		pw.mu.Lock()
		if !pw.stopped && pw.violation == "" {
			pw.violation = "the watch ended early"
		}
		pw.mu.Unlock()
	}()
	e.t.Cleanup(pw.w.Stop)
	return pw
}

// wait polls f over the watched pods.
func (pw *podWatch) wait(t *testing.T, what string, f func(pods map[string]*v1.Pod) bool) {
	t.Helper()
	replicasettest.Poll(t, 20*time.Second, what, func() (bool, error) {
		pw.mu.Lock()
		defer pw.mu.Unlock()
		return f(pw.pods), nil
	})
}

// stop ends the watch and fails the test if the invariant broke; it
// returns how many events were checked.
func (pw *podWatch) stop(t *testing.T) int {
	t.Helper()
	pw.mu.Lock()
	pw.stopped = true
	pw.mu.Unlock()
	pw.w.Stop()
	<-pw.closed
	if pw.violation != "" {
		t.Fatal(pw.violation)
	}
	return pw.events
}

func active(p *v1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed
}

func ready(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func hashOf(p *v1.Pod) string { return p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] }

func TestDeployment(t *testing.T) {
	e := start(t)

	t.Run("CreateAndScale", func(t *testing.T) {
		e.t = t
		ns := e.namespace("scale")
		e.create(ns, newDeployment("web", 3))
		d := e.waitComplete(ns, "web")
		rss := e.replicaSets(ns, d)
		if len(rss) != 1 {
			t.Fatalf("%d replicasets", len(rss))
		}
		rs := rss[0]
		hash := ComputeHash(&d.Spec.Template, nil)
		if rs.Name != "web-"+hash || rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
			rs.Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
			rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
			t.Fatalf("replicaset %s, labels %v, selector %v, template labels %v (hash %s)", rs.Name, rs.Labels, rs.Spec.Selector, rs.Spec.Template.Labels, hash)
		}
		for k, v := range map[string]string{RevisionAnnotation: "1", DesiredReplicasAnnotation: "3", MaxReplicasAnnotation: "4"} {
			if rs.Annotations[k] != v {
				t.Fatalf("replicaset annotation %s=%q, want %q", k, rs.Annotations[k], v)
			}
		}
		if d.Annotations[RevisionAnnotation] != "1" {
			t.Fatalf("deployment annotations %v", d.Annotations)
		}
		if c := getCondition(d.Status, appsv1.DeploymentAvailable); c == nil || c.Status != v1.ConditionTrue || c.Reason != reasonMinimumAvailable {
			t.Fatalf("Available condition %+v", c)
		}
		replicasettest.Poll(t, 10*time.Second, "NewReplicaSetAvailable", func() (bool, error) {
			c := getCondition(e.get(ns, "web").Status, appsv1.DeploymentProgressing)
			return c != nil && c.Status == v1.ConditionTrue && c.Reason == reasonNewRSAvailable &&
				c.Message == fmt.Sprintf("ReplicaSet %q has successfully progressed.", rs.Name), fmt.Errorf("%+v", c)
		})
		e.waitEvent(ns, "web", fmt.Sprintf("ScalingReplicaSet: Scaled up replica set %s from 0 to 3", rs.Name))

		// kubectl scale goes through the scale subresource.
		sc, err := e.client.AppsV1().Deployments(ns).GetScale(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = 5
		if _, err := e.client.AppsV1().Deployments(ns).UpdateScale(context.Background(), "web", sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		d = e.waitComplete(ns, "web")
		e.waitEvent(ns, "web", fmt.Sprintf("ScalingReplicaSet: Scaled up replica set %s from 3 to 5", rs.Name))
		e.patch(ns, "web", `{"spec":{"replicas":2}}`)
		d = e.waitComplete(ns, "web")
		e.waitEvent(ns, "web", fmt.Sprintf("ScalingReplicaSet: Scaled down replica set %s from 5 to 2", rs.Name))
		if rss := e.replicaSets(ns, d); len(rss) != 1 || rss[0].Annotations[DesiredReplicasAnnotation] != "2" {
			t.Fatalf("after scaling: %d replicasets, annotations %v", len(rss), rss[0].Annotations)
		}
	})

	t.Run("AdoptsOrphanReplicaSet", func(t *testing.T) {
		e.t = t
		ctx := context.Background()
		ns := e.namespace("adopt")
		d := newDeployment("web", 3)
		orphan := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web-orphan", Labels: d.Spec.Template.Labels},
			Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](2), Selector: d.Spec.Selector, Template: d.Spec.Template},
		}
		if _, err := e.client.AppsV1().ReplicaSets(ns).Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.create(ns, d)
		d = e.waitComplete(ns, "web")
		rss := e.replicaSets(ns, d)
		if len(rss) != 1 || rss[0].Name != "web-orphan" || *rss[0].Spec.Replicas != 3 || rss[0].Annotations[RevisionAnnotation] != "1" {
			t.Fatalf("replicasets: %s", describe(rss))
		}
		ref := metav1.GetControllerOf(&rss[0])
		if ref == nil || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Fatalf("owner %+v", rss[0].OwnerReferences)
		}
	})

	// The rolling update bounds hold at every pod event, with the default
	// percentages (25% of 10: surge 3 rounded up, unavailable 2 rounded
	// down) and with one-at-a-time replacement.
	for _, tc := range []struct {
		name                 string
		strategy             *appsv1.DeploymentStrategy
		maxTotal, minAvailab int
	}{
		{"RollingUpdatePercent", nil, 13, 8},
		{"RollingUpdateOneAtATime", ptr.To(rollingUpdate(intstr.FromInt32(0), intstr.FromInt32(1))), 10, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			ns := e.namespace(strings.ToLower(tc.name))
			d := newDeployment("web", 10)
			if tc.strategy != nil {
				d.Spec.Strategy = *tc.strategy
			}
			e.create(ns, d)
			d = e.waitComplete(ns, "web")
			oldHash := ComputeHash(&d.Spec.Template, nil)
			pw := e.watchPods(ns, func(pods map[string]*v1.Pod) string {
				total, available := 0, 0
				for _, p := range pods {
					if active(p) {
						total++
						if ready(p) {
							available++
						}
					}
				}
				if total > tc.maxTotal || available < tc.minAvailab {
					return fmt.Sprintf("%d pods, %d available; bounds %d and %d", total, available, tc.maxTotal, tc.minAvailab)
				}
				return ""
			})
			e.setImage(ns, "web", "busybox:2")
			d = e.waitComplete(ns, "web")
			pw.wait(t, "only new pods left", func(pods map[string]*v1.Pod) bool {
				for _, p := range pods {
					if hashOf(p) == oldHash {
						return false
					}
				}
				return len(pods) == 10
			})
			n := pw.stop(t)
			t.Logf("%d pod events checked", n)
			rss := e.replicaSets(ns, d)
			if len(rss) != 2 || *rss[0].Spec.Replicas != 0 || *rss[1].Spec.Replicas != 10 ||
				rss[1].Annotations[RevisionAnnotation] != "2" || d.Annotations[RevisionAnnotation] != "2" {
				t.Fatalf("replicasets after the rollout: %s", describe(rss))
			}
		})
	}

	t.Run("RecreateNeverOverlaps", func(t *testing.T) {
		e.t = t
		ns := e.namespace("recreate")
		d := newDeployment("web", 4)
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		e.create(ns, d)
		d = e.waitComplete(ns, "web")
		oldHash := ComputeHash(&d.Spec.Template, nil)
		pw := e.watchPods(ns, func(pods map[string]*v1.Pod) string {
			var old, cur []string
			for _, p := range pods {
				if hashOf(p) == oldHash {
					old = append(old, p.Name)
				} else {
					cur = append(cur, p.Name)
				}
			}
			if len(old) > 0 && len(cur) > 0 {
				return fmt.Sprintf("old pods %v and new pods %v at once", old, cur)
			}
			return ""
		})
		e.setImage(ns, "web", "busybox:2")
		d = e.waitComplete(ns, "web")
		pw.wait(t, "4 new pods", func(pods map[string]*v1.Pod) bool {
			n := 0
			for _, p := range pods {
				if hashOf(p) != oldHash && active(p) {
					n++
				}
			}
			return n == 4 && len(pods) == 4
		})
		pw.stop(t)
		if rss := e.replicaSets(ns, d); len(rss) != 2 {
			t.Fatalf("replicasets: %s", describe(rss))
		}
	})

	t.Run("RevisionsHistoryAndRollback", func(t *testing.T) {
		e.t = t
		ns := e.namespace("history")
		d := newDeployment("web", 2)
		d.Spec.RevisionHistoryLimit = ptr.To[int32](2)
		e.create(ns, d)
		e.waitComplete(ns, "web")
		for i := 2; i <= 5; i++ {
			e.setImage(ns, "web", fmt.Sprintf("busybox:%d", i))
			e.waitComplete(ns, "web")
		}
		var rss []appsv1.ReplicaSet
		replicasettest.Poll(t, 10*time.Second, "old replicasets cleaned up", func() (bool, error) {
			rss = e.replicaSets(ns, e.get(ns, "web"))
			return len(rss) == 3, fmt.Errorf("%s", describe(rss))
		})
		if revs := revisions(rss); !slices.Equal(revs, []string{"3", "4", "5"}) {
			t.Fatalf("revisions %v", revs)
		}
		// What kubectl rollout undo --to-revision=3 does: copy the old
		// template (without its hash label) into the deployment.
		tmpl := rss[0].Spec.Template.DeepCopy()
		delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
		patch, _ := json.Marshal([]map[string]any{{"op": "replace", "path": "/spec/template", "value": tmpl}})
		if _, err := e.client.AppsV1().Deployments(ns).Patch(context.Background(), "web", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		d = e.waitComplete(ns, "web")
		replicasettest.Poll(t, 10*time.Second, "rolled back to the old replicaset", func() (bool, error) {
			d = e.get(ns, "web")
			rss = e.replicaSets(ns, d)
			return d.Annotations[RevisionAnnotation] == "6" && len(rss) == 3, fmt.Errorf("deployment revision %q, %s", d.Annotations[RevisionAnnotation], describe(rss))
		})
		cur := rss[2]
		if cur.Spec.Template.Spec.Containers[0].Image != "busybox:3" || cur.Annotations[RevisionHistoryAnnotation] != "3" || *cur.Spec.Replicas != 2 {
			t.Fatalf("current replicaset after rollback: %s, annotations %v", cur.Name, cur.Annotations)
		}
		if revs := revisions(rss); !slices.Equal(revs, []string{"4", "5", "6"}) {
			t.Fatalf("revisions after rollback %v", revs)
		}
	})

	t.Run("PauseResumeIsOneRollout", func(t *testing.T) {
		e.t = t
		ns := e.namespace("pause")
		e.create(ns, newDeployment("web", 3))
		e.waitComplete(ns, "web")
		e.patch(ns, "web", `{"spec":{"paused":true}}`)
		e.setImage(ns, "web", "busybox:2")
		e.patch(ns, "web", `{"spec":{"template":{"spec":{"containers":[{"name":"busybox","env":[{"name":"MODE","value":"x"}]}]}}}}`)
		e.patch(ns, "web", `{"spec":{"replicas":4}}`)
		// Once the controller has seen the last change, nothing rolled out
		// but the scale-up.
		replicasettest.Poll(t, 10*time.Second, "paused deployment observed", func() (bool, error) {
			d := e.get(ns, "web")
			c := getCondition(d.Status, appsv1.DeploymentProgressing)
			return d.Status.ObservedGeneration == d.Generation && c != nil && c.Reason == reasonPaused &&
				c.Status == v1.ConditionUnknown && d.Status.AvailableReplicas == 4, fmt.Errorf("status %+v", d.Status)
		})
		d := e.get(ns, "web")
		if rss := e.replicaSets(ns, d); len(rss) != 1 || *rss[0].Spec.Replicas != 4 {
			t.Fatalf("while paused: %s", describe(rss))
		}
		e.patch(ns, "web", `{"spec":{"paused":null}}`)
		d = e.waitComplete(ns, "web")
		rss := e.replicaSets(ns, d)
		if len(rss) != 2 || d.Annotations[RevisionAnnotation] != "2" {
			t.Fatalf("after resume: %s", describe(rss))
		}
		c := rss[1].Spec.Template.Spec.Containers[0]
		if c.Image != "busybox:2" || len(c.Env) != 1 {
			t.Fatalf("new template %+v", c)
		}
	})

	t.Run("ProportionalScalingDuringRollout", func(t *testing.T) {
		e.t = t
		ns := e.namespace("proportional")
		d := newDeployment("web", 10)
		d.Spec.Strategy = rollingUpdate(intstr.FromInt32(3), intstr.FromInt32(2))
		e.create(ns, d)
		e.waitComplete(ns, "web")
		// The new pods never become ready: the rollout stops with the old
		// replicaset at 8 (2 unavailable) and the new at 5 (13 = 10 + 3).
		e.patch(ns, "web", fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:"true"}}}}}`, hollow.AnnotationNeverReady))
		e.waitSizes(ns, []int32{8, 5})
		e.patch(ns, "web", `{"spec":{"replicas":20}}`)
		// 23 = 20 + 3 spread as 8:5 of 13: 14 and 9.
		e.waitSizes(ns, []int32{14, 9})
	})

	t.Run("ProgressDeadlineExceeded", func(t *testing.T) {
		e.t = t
		ns := e.namespace("deadline")
		d := newDeployment("web", 2)
		d.Spec.ProgressDeadlineSeconds = ptr.To[int32](2)
		d.Spec.Template.Annotations = map[string]string{hollow.AnnotationNeverReady: "true"}
		e.create(ns, d)
		replicasettest.Poll(t, 15*time.Second, "ProgressDeadlineExceeded", func() (bool, error) {
			d = e.get(ns, "web")
			c := getCondition(d.Status, appsv1.DeploymentProgressing)
			return c != nil && c.Reason == reasonTimedOut, fmt.Errorf("conditions %+v", d.Status.Conditions)
		})
		rs := e.replicaSets(ns, d)[0]
		c := getCondition(d.Status, appsv1.DeploymentProgressing)
		if c.Status != v1.ConditionFalse || c.Message != fmt.Sprintf("ReplicaSet %q has timed out progressing.", rs.Name) {
			t.Fatalf("Progressing %+v", c)
		}
		if a := getCondition(d.Status, appsv1.DeploymentAvailable); a == nil || a.Status != v1.ConditionFalse || a.Reason != reasonMinimumUnavailable {
			t.Fatalf("Available %+v", a)
		}
	})
}

// waitSizes waits until the deployment's replicasets, by revision, have
// these spec.replicas and stay so for the controller's next syncs.
func (e *env) waitSizes(ns string, want []int32) {
	e.t.Helper()
	replicasettest.Poll(e.t, 20*time.Second, fmt.Sprintf("replicaset sizes %v", want), func() (bool, error) {
		d := e.get(ns, "web")
		rss := e.replicaSets(ns, d)
		var got []int32
		for _, rs := range rss {
			got = append(got, *rs.Spec.Replicas)
		}
		return d.Status.ObservedGeneration == d.Generation && slices.Equal(got, want), fmt.Errorf("sizes %v", got)
	})
}

func revisions(rss []appsv1.ReplicaSet) []string {
	var out []string
	for _, rs := range rss {
		out = append(out, rs.Annotations[RevisionAnnotation])
	}
	return out
}

func describe(rss []appsv1.ReplicaSet) string {
	var parts []string
	for _, rs := range rss {
		parts = append(parts, fmt.Sprintf("%s(rev %s, %d/%d)", rs.Name, rs.Annotations[RevisionAnnotation], rs.Status.Replicas, *rs.Spec.Replicas))
	}
	return strings.Join(parts, ", ")
}
