package replicaset

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"synod/components/controllers/replicaset/replicasettest"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// env is a cluster with the replicaset controller running in-process,
// three hollow nodes and a binder standing in for the scheduler.
type env struct {
	t      *testing.T
	c      *testcluster.Cluster
	client kubernetes.Interface
	binder *replicasettest.Binder
}

func start(t *testing.T) *env {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	testcluster.RunControllers(t, cc, New)
	nodes := replicasettest.StartNodes(t, c.Client, 3)
	return &env{t: t, c: c, client: c.Client, binder: replicasettest.StartBinder(t, c.Client, nodes, 0)}
}

func (e *env) namespace(name string) string {
	e.t.Helper()
	_, err := e.client.CoreV1().Namespaces().Create(context.Background(), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return name
}

func newRS(name string, n int32) *appsv1.ReplicaSet {
	labels := map[string]string{"app": name}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

func (e *env) create(ns string, rs *appsv1.ReplicaSet) *appsv1.ReplicaSet {
	e.t.Helper()
	out, err := e.client.AppsV1().ReplicaSets(ns).Create(context.Background(), rs, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) scale(ns, name string, n int32) {
	e.t.Helper()
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
	if _, err := e.client.AppsV1().ReplicaSets(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(ns, name string) *appsv1.ReplicaSet {
	e.t.Helper()
	rs, err := e.client.AppsV1().ReplicaSets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

// activePods lists the pods of ns that are not being deleted.
func (e *env) activePods(ns string) []v1.Pod {
	e.t.Helper()
	list, err := e.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []v1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// waitSettled waits until rs has n pods, all ready and available, and its
// status says so for its current generation.
func (e *env) waitSettled(ns, name string, n int32) *appsv1.ReplicaSet {
	e.t.Helper()
	var rs *appsv1.ReplicaSet
	replicasettest.Poll(e.t, 20*time.Second, fmt.Sprintf("%s/%s settled at %d", ns, name, n), func() (bool, error) {
		rs = e.get(ns, name)
		s := rs.Status
		if s.ObservedGeneration != rs.Generation || s.Replicas != n || s.ReadyReplicas != n ||
			s.AvailableReplicas != n || s.FullyLabeledReplicas != n {
			return false, fmt.Errorf("status %+v, generation %d", s, rs.Generation)
		}
		return len(e.activePods(ns)) == int(n), fmt.Errorf("%d active pods", len(e.activePods(ns)))
	})
	return rs
}

func isControlledBy(p *v1.Pod, rs *appsv1.ReplicaSet) bool {
	ref := metav1.GetControllerOf(p)
	return ref != nil && ref.UID == rs.UID && ref.Kind == "ReplicaSet" && ref.APIVersion == "apps/v1" &&
		ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion
}

// events returns "Reason: message" for the events about name in ns
// recorded by the replicaset controller.
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
		if ev.Source.Component == "replicaset-controller" {
			out = append(out, ev.Reason+": "+ev.Message)
		}
	}
	return out
}

func TestReplicaSet(t *testing.T) {
	e := start(t)

	t.Run("ScaleUpAndDown", func(t *testing.T) {
		e.t = t
		ns := e.namespace("scale")
		rs := e.create(ns, newRS("web", 3))
		e.waitSettled(ns, "web", 3)
		pods := e.activePods(ns)
		for _, p := range pods {
			if !isControlledBy(&p, rs) || !strings.HasPrefix(p.Name, "web-") || p.Spec.NodeName == "" {
				t.Fatalf("pod %s: owner %+v, node %q", p.Name, p.OwnerReferences, p.Spec.NodeName)
			}
		}
		replicasettest.Poll(t, 10*time.Second, "SuccessfulCreate events", func() (bool, error) {
			evs := e.events(ns, "web")
			for _, p := range pods {
				if !slices.Contains(evs, "SuccessfulCreate: Created pod: "+p.Name) {
					return false, fmt.Errorf("events %q", evs)
				}
			}
			return true, nil
		})

		e.scale(ns, "web", 7)
		e.waitSettled(ns, "web", 7)
		e.scale(ns, "web", 2)
		e.waitSettled(ns, "web", 2)
		remaining := e.activePods(ns)
		replicasettest.Poll(t, 10*time.Second, "SuccessfulDelete events", func() (bool, error) {
			n := 0
			for _, ev := range e.events(ns, "web") {
				if strings.HasPrefix(ev, "SuccessfulDelete: Deleted pod: web-") {
					n++
				}
			}
			return n == 5, fmt.Errorf("%d SuccessfulDelete events", n)
		})
		for _, ev := range e.events(ns, "web") {
			for _, p := range remaining {
				if ev == "SuccessfulDelete: Deleted pod: "+p.Name {
					t.Fatalf("a remaining pod was reported deleted: %s", ev)
				}
			}
		}
	})

	t.Run("DeletesUnscheduledFirst", func(t *testing.T) {
		e.t = t
		ns := e.namespace("order")
		e.create(ns, newRS("web", 3))
		e.waitSettled(ns, "web", 3)
		running := map[string]bool{}
		for _, p := range e.activePods(ns) {
			running[p.Name] = true
		}
		// Two more that stay unscheduled, then scale back: those two go.
		e.binder.Pause()
		e.scale(ns, "web", 5)
		replicasettest.Poll(t, 10*time.Second, "5 pods", func() (bool, error) {
			return len(e.activePods(ns)) == 5, nil
		})
		e.scale(ns, "web", 3)
		replicasettest.Poll(t, 10*time.Second, "3 pods", func() (bool, error) {
			return len(e.activePods(ns)) == 3, nil
		})
		e.binder.Resume()
		for _, p := range e.activePods(ns) {
			if !running[p.Name] {
				t.Fatalf("pod %s survived the scale-down; a running pod was deleted instead", p.Name)
			}
		}
		e.waitSettled(ns, "web", 3)
	})

	t.Run("AdoptAndRelease", func(t *testing.T) {
		e.t = t
		ctx := context.Background()
		ns := e.namespace("adopt")
		orphan := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "orphan", Labels: map[string]string{"app": "web"}},
			Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
		}
		if _, err := e.client.CoreV1().Pods(ns).Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rs := e.create(ns, newRS("web", 2))
		e.waitSettled(ns, "web", 2)
		p, err := e.client.CoreV1().Pods(ns).Get(ctx, "orphan", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !isControlledBy(p, rs) {
			t.Fatalf("orphan not adopted: %+v", p.OwnerReferences)
		}
		// A relabelled pod no longer belongs: it is released and replaced.
		patch := []byte(`{"metadata":{"labels":{"app":"other"}}}`)
		if _, err := e.client.CoreV1().Pods(ns).Patch(ctx, "orphan", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		replicasettest.Poll(t, 10*time.Second, "released pod", func() (bool, error) {
			p, err := e.client.CoreV1().Pods(ns).Get(ctx, "orphan", metav1.GetOptions{})
			return err == nil && len(p.OwnerReferences) == 0, err
		})
		replicasettest.Poll(t, 20*time.Second, "a replacement", func() (bool, error) {
			rs := e.get(ns, "web")
			return len(e.activePods(ns)) == 3 && rs.Status.Replicas == 2 && rs.Status.AvailableReplicas == 2, nil
		})
	})

	t.Run("SelfHealingIgnoresTerminatingPods", func(t *testing.T) {
		e.t = t
		ctx := context.Background()
		ns := e.namespace("heal")
		e.create(ns, newRS("web", 3))
		e.waitSettled(ns, "web", 3)
		victim := e.activePods(ns)[0].Name
		// A finalizer keeps the deleted pod around, terminating: it must
		// be replaced at once and not counted.
		patch := []byte(`{"metadata":{"finalizers":["test.synod.io/hold"]}}`)
		if _, err := e.client.CoreV1().Pods(ns).Patch(ctx, victim, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := e.client.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitSettled(ns, "web", 3)
		p, err := e.client.CoreV1().Pods(ns).Get(ctx, victim, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp == nil {
			t.Fatalf("victim should still be terminating: %v %v", err, p)
		}
		// The kubelet keeps retrying its delete of the held pod, so the
		// patch may lose a few races.
		replicasettest.Poll(t, 10*time.Second, "finalizer removed", func() (bool, error) {
			_, err := e.client.CoreV1().Pods(ns).Patch(ctx, victim, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			return err == nil, err
		})
		// A plain delete is healed too.
		if err := e.client.CoreV1().Pods(ns).Delete(ctx, e.activePods(ns)[0].Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitSettled(ns, "web", 3)
	})

	t.Run("MinReadySeconds", func(t *testing.T) {
		e.t = t
		ns := e.namespace("minready")
		rs := newRS("web", 2)
		rs.Spec.MinReadySeconds = 2
		e.create(ns, rs)
		replicasettest.Poll(t, 10*time.Second, "ready, not yet available", func() (bool, error) {
			s := e.get(ns, "web").Status
			return s.ReadyReplicas == 2, fmt.Errorf("status %+v", s)
		})
		if s := e.get(ns, "web").Status; s.AvailableReplicas != 0 {
			// Possible only if the pods took 2s to become ready.
			t.Logf("pods already available: %+v", s)
		}
		e.waitSettled(ns, "web", 2)
	})
}

// TestNoDoubleCreateUnderInformerLag delays every pod watch event the
// controller receives, and prods it to resync meanwhile: expectations must
// keep it from creating or deleting a pod twice.
func TestNoDoubleCreateUnderInformerLag(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	lagging := rest.CopyConfig(c.Config)
	lagging.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &laggingWatch{rt: rt, delay: 40 * time.Millisecond}
	})
	cc.Informers = informers.NewSharedInformerFactory(kubernetes.NewForConfigOrDie(lagging), 0)
	testcluster.RunControllers(t, cc, New)
	nodes := replicasettest.StartNodes(t, c.Client, 3)
	replicasettest.StartBinder(t, c.Client, nodes, 0)
	e := &env{t: t, c: c, client: c.Client}
	ns := e.namespace("lag")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Count every pod ever created and deleted, from an unlagged watch.
	w, err := c.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	created, deleted := map[string]bool{}, map[string]bool{}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*v1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			switch {
			case ev.Type == watch.Added:
				created[p.Name] = true
			case ev.Type == watch.Deleted || p.DeletionTimestamp != nil:
				deleted[p.Name] = true
			}
			mu.Unlock()
		}
	}()
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(created), len(deleted)
	}
	// Resyncs while creations and deletions are in flight: every RS update
	// enqueues it again.
	prod := func(d time.Duration) {
		end := time.Now().Add(d)
		for i := 0; time.Now().Before(end); i++ {
			patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"prod":"%d"}}}`, i))
			if _, err := c.Client.AppsV1().ReplicaSets(ns).Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	e.create(ns, newRS("web", 30))
	prod(2 * time.Second)
	e.waitSettled(ns, "web", 30)
	if n, _ := counts(); n != 30 {
		t.Fatalf("%d pods created for 30 replicas", n)
	}
	e.scale(ns, "web", 10)
	prod(2 * time.Second)
	e.waitSettled(ns, "web", 10)
	if n, d := counts(); n != 30 || d != 20 {
		t.Fatalf("scaling 30 -> 10: %d pods created, %d deleted; want 30, 20", n, d)
	}
}

// laggingWatch delays the body of every pod watch response.
type laggingWatch struct {
	rt    http.RoundTripper
	delay time.Duration
}

func (l *laggingWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil || req.URL.Query().Get("watch") != "true" || !strings.HasSuffix(req.URL.Path, "/pods") {
		return resp, err
	}
	resp.Body = &slowBody{ReadCloser: resp.Body, delay: l.delay}
	return resp, nil
}

type slowBody struct {
	io.ReadCloser
	delay time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	time.Sleep(b.delay)
	return b.ReadCloser.Read(p)
}

// TestReplicaFailureCondition runs the controller as a user that may do
// everything it needs but create pods: the ReplicaSet reports it.
func TestReplicaFailureCondition(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "replicasets/status"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "no-pod-create"}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "no-pod-create"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "no-pod-create"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "limited"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := exec.Command(testcluster.Binary(), "kubeconfig", "--cluster-file", c.Launch.Dir(), "--user", "limited").Output()
	if err != nil {
		t.Fatalf("synod kubeconfig: %v", err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cc := testcluster.NewControllerContext(t, c)
	limited := kubernetes.NewForConfigOrDie(cfg)
	cc.Client = limited
	cc.Informers = informers.NewSharedInformerFactory(limited, 0)
	testcluster.RunControllers(t, cc, New)

	e := &env{t: t, c: c, client: c.Client}
	ns := e.namespace("fail")
	e.create(ns, newRS("web", 2))
	replicasettest.Poll(t, 20*time.Second, "ReplicaFailure condition", func() (bool, error) {
		rs := e.get(ns, "web")
		cond := condition(rs.Status, appsv1.ReplicaSetReplicaFailure)
		if cond == nil {
			return false, fmt.Errorf("conditions %+v", rs.Status.Conditions)
		}
		if cond.Status != v1.ConditionTrue || cond.Reason != "FailedCreate" || !strings.Contains(cond.Message, "forbidden") {
			t.Fatalf("condition %+v", cond)
		}
		return true, nil
	})
	replicasettest.Poll(t, 10*time.Second, "FailedCreate event", func() (bool, error) {
		for _, ev := range e.events(ns, "web") {
			if strings.HasPrefix(ev, "FailedCreate: Error creating: ") {
				return true, nil
			}
		}
		return false, fmt.Errorf("events %q", e.events(ns, "web"))
	})
	if pods := e.activePods(ns); len(pods) != 0 {
		t.Fatalf("pods exist: %d", len(pods))
	}
}

func TestPodsToDeleteOrder(t *testing.T) {
	now := time.Now()
	mk := func(name, node string, phase v1.PodPhase, ready bool, readySince time.Duration, created time.Duration) *v1.Pod {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(-created))},
			Spec: v1.PodSpec{NodeName: node}, Status: v1.PodStatus{Phase: phase}}
		status := v1.ConditionFalse
		if ready {
			status = v1.ConditionTrue
		}
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: status, LastTransitionTime: metav1.NewTime(now.Add(-readySince))}}
		return p
	}
	pods := []*v1.Pod{
		mk("old-ready", "n1", v1.PodRunning, true, time.Hour, 2*time.Hour),
		mk("new-ready", "n2", v1.PodRunning, true, time.Minute, time.Hour),
		mk("unscheduled", "", v1.PodPending, false, 0, 3*time.Hour),
		mk("pending", "n3", v1.PodPending, false, 0, 3*time.Hour),
		mk("not-ready", "n3", v1.PodRunning, false, 0, 3*time.Hour),
	}
	var got []string
	for _, p := range podsToDelete(pods, pods, 4) {
		got = append(got, p.Name)
	}
	want := []string{"unscheduled", "pending", "not-ready", "new-ready"}
	if !slices.Equal(got, want) {
		t.Fatalf("deletion order %v, want %v", got, want)
	}
}
