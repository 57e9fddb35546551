package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"

	"synod/components/scheduler"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// env is one real cluster (no components) shared by the subtests of a
// test, each with its own namespace and nodes.
type env struct {
	c      *testcluster.Cluster
	client kubernetes.Interface
	sched  *scheduler.Scheduler // the default scheduler
}

func newEnv(t *testing.T) *env {
	c := testcluster.Start(t, testcluster.Options{Masters: 1})
	return &env{c: c, client: c.Client}
}

// run starts a scheduler in-process, as a master's term does, until the
// test ends.
func (e *env) run(t *testing.T, name string) *scheduler.Scheduler {
	t.Helper()
	cc := testcluster.NewControllerContext(t, e.c)
	s, err := scheduler.New(scheduler.Config{Client: cc.Client, Informers: cc.Informers,
		Recorder: cc.Recorder(name), Logger: cc.Logger, SchedulerName: name})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.Informers.Start(ctx.Done())
	cc.Informers.WaitForCacheSync(ctx.Done())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("scheduler Run did not return within 10s of its context's end")
		}
		cc.Informers.Shutdown()
	})
	return s
}

// space is a subtest's namespace and nodes; cleanup deletes both, so the
// next subtest's scheduler decisions see only its own nodes.
type space struct {
	t     *testing.T
	e     *env
	ns    string
	nodes []string
}

func (e *env) space(t *testing.T) *space {
	t.Helper()
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(ns) > 50 {
		ns = ns[len(ns)-50:]
	}
	ns = strings.Trim(ns, "-")
	sp := &space{t: t, e: e, ns: ns}
	if _, err := e.client.CoreV1().Namespaces().Create(ctx(t), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := context.Background()
		zero := int64(0)
		pods, _ := e.client.CoreV1().Pods(ns).List(c, metav1.ListOptions{})
		for _, p := range pods.Items {
			e.client.CoreV1().Pods(ns).Delete(c, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}
		for _, n := range sp.nodes {
			e.client.CoreV1().Nodes().Delete(c, n, metav1.DeleteOptions{})
		}
		// The next subtest counts nodes in its messages: wait until the
		// scheduler has seen these go.
		deadline := time.Now().Add(10 * time.Second)
		for e.sched.Stats().Nodes != 0 {
			if time.Now().After(deadline) {
				t.Errorf("scheduler still sees %d nodes 10s after they were deleted", e.sched.Stats().Nodes)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return sp
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// nodeOpt tweaks a test node.
type nodeOpt func(*v1.Node)

func labels(kv ...string) nodeOpt {
	return func(n *v1.Node) {
		for i := 0; i+1 < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}

func taint(key, value string, effect v1.TaintEffect) nodeOpt {
	return func(n *v1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: key, Value: value, Effect: effect})
	}
}

func ready(s v1.ConditionStatus) nodeOpt {
	return func(n *v1.Node) { n.Status.Conditions[0].Status = s }
}

func unschedulable(n *v1.Node) { n.Spec.Unschedulable = true }

func capacity(cpu, mem string, pods int) nodeOpt {
	return func(n *v1.Node) {
		rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem),
			v1.ResourcePods: *resource.NewQuantity(int64(pods), resource.DecimalSI)}
		n.Status.Capacity, n.Status.Allocatable = rl, rl
	}
}

// node registers a Node (Ready, 2 cpu, 4Gi, 110 pods unless changed) with
// its status, as a kubelet does, and deletes it when the subtest ends.
func (sp *space) node(name string, opts ...nodeOpt) *v1.Node {
	sp.t.Helper()
	name = sp.ns + "-" + name
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue,
			Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}},
	}
	capacity("2", "4Gi", 110)(n)
	for _, o := range opts {
		o(n)
	}
	got, err := sp.e.client.CoreV1().Nodes().Create(ctx(sp.t), n, metav1.CreateOptions{})
	if err != nil {
		sp.t.Fatalf("create node %s: %v", name, err)
	}
	sp.nodes = append(sp.nodes, name)
	return got
}

// podOpt tweaks a test pod.
type podOpt func(*v1.Pod)

func requests(cpu, mem string) podOpt {
	return func(p *v1.Pod) {
		rl := v1.ResourceList{}
		if cpu != "" {
			rl[v1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			rl[v1.ResourceMemory] = resource.MustParse(mem)
		}
		p.Spec.Containers[0].Resources.Requests = rl
	}
}

func nodeSelector(kv ...string) podOpt {
	return func(p *v1.Pod) {
		p.Spec.NodeSelector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func affinity(a *v1.NodeAffinity) podOpt {
	return func(p *v1.Pod) { p.Spec.Affinity = &v1.Affinity{NodeAffinity: a} }
}

func toleration(key, value string, effect v1.TaintEffect) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: key, Operator: v1.TolerationOpEqual, Value: value, Effect: effect})
	}
}

func hostPort(port int32) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: port, HostPort: port}}
	}
}

func schedulerName(name string) podOpt { return func(p *v1.Pod) { p.Spec.SchedulerName = name } }

func ownedBy(uid types.UID) podOpt {
	return func(p *v1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: uid,
			Controller: new(true)}}
	}
}

func onNode(name string) podOpt { return func(p *v1.Pod) { p.Spec.NodeName = name } }

func (sp *space) pod(name string, opts ...podOpt) *v1.Pod {
	sp.t.Helper()
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sp.ns},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
	}
	for _, o := range opts {
		o(p)
	}
	got, err := sp.e.client.CoreV1().Pods(sp.ns).Create(ctx(sp.t), p, metav1.CreateOptions{})
	if err != nil {
		sp.t.Fatalf("create pod %s: %v", name, err)
	}
	return got
}

// boundTo waits (bounded) for the pod to be bound and returns its node.
func (sp *space) boundTo(name string) string {
	sp.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := sp.e.client.CoreV1().Pods(sp.ns).Get(ctx(sp.t), name, metav1.GetOptions{})
		if err == nil && p.Spec.NodeName != "" {
			return strings.TrimPrefix(p.Spec.NodeName, sp.ns+"-")
		}
		if time.Now().After(deadline) {
			sp.t.Fatalf("pod %s not bound within 10s (err %v)", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unschedulableMsg waits for PodScheduled=False and returns its message,
// after checking the pod is still unbound.
func (sp *space) unschedulableMsg(name string) string {
	sp.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := sp.e.client.CoreV1().Pods(sp.ns).Get(ctx(sp.t), name, metav1.GetOptions{})
		if err != nil {
			sp.t.Fatal(err)
		}
		if p.Spec.NodeName != "" {
			sp.t.Fatalf("pod %s was bound to %s, want it pending", name, p.Spec.NodeName)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse {
				if c.Reason != v1.PodReasonUnschedulable {
					sp.t.Fatalf("PodScheduled reason %q, want Unschedulable", c.Reason)
				}
				return c.Message
			}
		}
		if time.Now().After(deadline) {
			sp.t.Fatalf("pod %s has no PodScheduled=False condition within 10s: %+v", name, p.Status.Conditions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// event waits for an event of reason about the pod and returns its message.
func (sp *space) event(pod, reason string) string {
	sp.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := sp.e.client.CoreV1().Events(sp.ns).List(ctx(sp.t), metav1.ListOptions{})
		if err != nil {
			sp.t.Fatal(err)
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == pod && ev.Reason == reason {
				return ev.Message
			}
		}
		if time.Now().After(deadline) {
			sp.t.Fatalf("no %s event for pod %s within 10s", reason, pod)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestScheduler(t *testing.T) {
	e := newEnv(t)
	e.sched = e.run(t, scheduler.DefaultSchedulerName)

	t.Run("nodeSelector", func(t *testing.T) {
		sp := e.space(t)
		sp.node("a", labels("zone", "a"))
		sp.node("b", labels("zone", "b"))
		sp.pod("p", nodeSelector("zone", "b"))
		sp.pod("nowhere", nodeSelector("zone", "c"))
		if got := sp.boundTo("p"); got != "b" {
			t.Errorf("pod with nodeSelector zone=b went to %s", got)
		}
		want := "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. " +
			"preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
		if got := sp.unschedulableMsg("nowhere"); got != want {
			t.Errorf("message\n got %q\nwant %q", got, want)
		}
	})

	t.Run("nodeAffinity", func(t *testing.T) {
		sp := e.space(t)
		sp.node("a", labels("disk", "hdd"))
		sp.node("b", labels("disk", "ssd"))
		sp.node("c", labels("disk", "ssd", "gpu", "yes"))
		sp.pod("required", affinity(&v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: "disk", Operator: v1.NodeSelectorOpIn, Values: []string{"ssd"}},
				{Key: "gpu", Operator: v1.NodeSelectorOpDoesNotExist},
			}}}}}))
		// Preferred: every node fits, the heaviest matching preference wins.
		sp.pod("preferred", affinity(&v1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.PreferredSchedulingTerm{
			{Weight: 10, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "disk", Operator: v1.NodeSelectorOpIn, Values: []string{"hdd"}}}}},
			{Weight: 100, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "gpu", Operator: v1.NodeSelectorOpExists}}}},
		}}))
		// matchFields on metadata.name.
		sp.pod("byname", affinity(&v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchFields: []v1.NodeSelectorRequirement{
				{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{sp.ns + "-a"}}}}}}}))
		if got := sp.boundTo("required"); got != "b" {
			t.Errorf("required affinity disk=ssd without gpu: went to %s, want b", got)
		}
		if got := sp.boundTo("preferred"); got != "c" {
			t.Errorf("preferred affinity gpu (weight 100): went to %s, want c", got)
		}
		if got := sp.boundTo("byname"); got != "a" {
			t.Errorf("matchFields metadata.name: went to %s, want a", got)
		}
	})

	t.Run("taints", func(t *testing.T) {
		sp := e.space(t)
		sp.node("tainted", taint("dedicated", "gpu", v1.TaintEffectNoSchedule))
		sp.node("evicting", taint("maintenance", "", v1.TaintEffectNoExecute))
		sp.node("plain")
		for i := range 4 {
			sp.pod(fmt.Sprintf("intolerant-%d", i))
		}
		sp.pod("tolerant", toleration("dedicated", "gpu", v1.TaintEffectNoSchedule), nodeSelector("kubernetes.io/hostname", sp.ns+"-tainted"))
		for i := range 4 {
			if got := sp.boundTo(fmt.Sprintf("intolerant-%d", i)); got != "plain" {
				t.Errorf("pod without tolerations went to %s", got)
			}
		}
		if got := sp.boundTo("tolerant"); got != "tainted" {
			t.Errorf("tolerating pod went to %s", got)
		}
	})

	t.Run("preferNoSchedule", func(t *testing.T) {
		sp := e.space(t)
		sp.node("soft", taint("spot", "true", v1.TaintEffectPreferNoSchedule))
		sp.node("plain")
		for i := range 3 {
			name := fmt.Sprintf("p%d", i)
			sp.pod(name)
			if got := sp.boundTo(name); got != "plain" {
				t.Errorf("%s went to the PreferNoSchedule node", name)
			}
		}
	})

	t.Run("unschedulableAndNotReady", func(t *testing.T) {
		sp := e.space(t)
		sp.node("cordoned", unschedulable)
		sp.node("notready", ready(v1.ConditionFalse))
		sp.node("unknown", ready(v1.ConditionUnknown))
		sp.pod("p")
		want := "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s). " +
			"preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
		if got := sp.unschedulableMsg("p"); got != want {
			t.Errorf("message\n got %q\nwant %q", got, want)
		}
		if got := sp.event("p", "FailedScheduling"); got != want {
			t.Errorf("FailedScheduling event %q, want %q", got, want)
		}
		// A pod tolerating unschedulable (as a DaemonSet pod does) fits the cordoned node.
		sp.pod("ds", func(p *v1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule})
		})
		if got := sp.boundTo("ds"); got != "cordoned" {
			t.Errorf("pod tolerating unschedulable went to %s", got)
		}
		// The NotReady node turns Ready: the waiting pod goes there at once.
		n, err := e.client.CoreV1().Nodes().Get(ctx(t), sp.ns+"-notready", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Conditions[0].Status = v1.ConditionTrue
		if _, err := e.client.CoreV1().Nodes().UpdateStatus(ctx(t), n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := sp.boundTo("p"); got != "notready" {
			t.Errorf("pod went to %s once notready turned Ready", got)
		}
	})

	t.Run("resourcesFit", func(t *testing.T) {
		sp := e.space(t)
		sp.node("a")
		sp.node("b", capacity("2", "4Gi", 1))
		// Already running pods (bound without the scheduler) count.
		sp.pod("big-on-a", onNode(sp.ns+"-a"), requests("1500m", "1Gi"))
		sp.pod("on-b", onNode(sp.ns+"-b"))
		sp.pod("half", requests("1", ""))
		want := "0/2 nodes are available: 1 Insufficient cpu, 1 Too many pods. " +
			"preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
		if got := sp.unschedulableMsg("half"); got != want {
			t.Errorf("message\n got %q\nwant %q", got, want)
		}
		// Freeing the cpu on a lets the pending pod in at once.
		zero := int64(0)
		if err := e.client.CoreV1().Pods(sp.ns).Delete(ctx(t), "big-on-a", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		if got := sp.boundTo("half"); got != "a" {
			t.Errorf("pod went to %s, want a", got)
		}
		// Memory: requests sum the containers, and an init container
		// asking for more counts alone (the max of the two).
		sp.pod("mem", requests("", "3Gi"), func(p *v1.Pod) {
			p.Spec.InitContainers = []v1.Container{{Name: "init", Image: "busybox", Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("5Gi")}}}}
		})
		// b is full and too small: two reasons there, and "1 Too many pods"
		// sorts before "2 Insufficient memory" as Kubernetes sorts them.
		want = "0/2 nodes are available: 1 Too many pods, 2 Insufficient memory. " +
			"preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
		if got := sp.unschedulableMsg("mem"); got != want {
			t.Errorf("message\n got %q\nwant %q", got, want)
		}
	})

	t.Run("hostPorts", func(t *testing.T) {
		sp := e.space(t)
		sp.node("a")
		sp.node("b")
		sp.pod("p1", hostPort(8080))
		first := sp.boundTo("p1")
		sp.pod("p2", hostPort(8080))
		if second := sp.boundTo("p2"); second == first {
			t.Errorf("two pods with hostPort 8080 on %s", first)
		}
		sp.pod("p3", hostPort(8080))
		want := "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports. " +
			"preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
		if got := sp.unschedulableMsg("p3"); got != want {
			t.Errorf("message\n got %q\nwant %q", got, want)
		}
		sp.pod("other-port", hostPort(9090))
		sp.boundTo("other-port")
	})

	t.Run("spreadOwner", func(t *testing.T) {
		sp := e.space(t)
		for _, n := range []string{"a", "b", "c"} {
			sp.node(n)
		}
		owner := uuid.NewUUID()
		for i := range 6 {
			sp.pod(fmt.Sprintf("web-%d", i), ownedBy(owner))
		}
		count := map[string]int{}
		for i := range 6 {
			count[sp.boundTo(fmt.Sprintf("web-%d", i))]++
		}
		if count["a"] != 2 || count["b"] != 2 || count["c"] != 2 {
			t.Errorf("6 replicas over 3 equal nodes: %v, want 2/2/2", count)
		}
	})

	t.Run("tooBigThenBigNode", func(t *testing.T) {
		sp := e.space(t)
		for _, n := range []string{"a", "b", "c"} {
			sp.node(n)
		}
		sp.pod("huge", requests("16", ""))
		want := "0/3 nodes are available: 3 Insufficient cpu. " +
			"preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
		if got := sp.unschedulableMsg("huge"); got != want {
			t.Errorf("message\n got %q\nwant %q", got, want)
		}
		if got := sp.event("huge", "FailedScheduling"); got != want {
			t.Errorf("FailedScheduling event %q, want %q", got, want)
		}
		// Let the first backoff (1s) pass, so it is the node event that
		// schedules the pod.
		time.Sleep(1500 * time.Millisecond)
		t0 := time.Now()
		sp.node("big", capacity("32", "64Gi", 110))
		got := sp.boundTo("huge")
		took := time.Since(t0)
		if got != "big" {
			t.Errorf("pod went to %s", got)
		}
		if took > time.Second {
			t.Errorf("pod bound %s after the big node was added, want within 1s", took)
		}
		t.Logf("bound %s after the big node was added", took)
		msg := sp.event("huge", "Scheduled")
		if want := fmt.Sprintf("Successfully assigned %s/huge to %s-big", sp.ns, sp.ns); msg != want {
			t.Errorf("Scheduled event %q, want %q", msg, want)
		}
		p, err := e.client.CoreV1().Pods(sp.ns).Get(ctx(t), "huge", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status != v1.ConditionTrue {
				t.Errorf("bound pod has %+v", c)
			}
		}
	})

	t.Run("noNodes", func(t *testing.T) {
		sp := e.space(t)
		sp.pod("p")
		if got := sp.unschedulableMsg("p"); got != scheduler.MessageNoNodes {
			t.Errorf("message %q, want %q", got, scheduler.MessageNoNodes)
		}
		// The first node to register takes it.
		sp.node("first")
		if got := sp.boundTo("p"); got != "first" {
			t.Errorf("pod went to %s", got)
		}
	})
}

// TestOtherSchedulerAndConflicts: pods for another scheduler are left alone
// until that scheduler runs; two schedulers of one name racing for the same
// pods bind each exactly once (the loser gets Conflict and lets go).
func TestOtherSchedulerAndConflicts(t *testing.T) {
	e := newEnv(t)
	e.sched = e.run(t, scheduler.DefaultSchedulerName)
	sp := e.space(t)
	sp.node("a", capacity("64", "64Gi", 500))
	sp.node("b", capacity("64", "64Gi", 500))

	sp.pod("theirs", schedulerName("other-scheduler"))
	sp.pod("ours")
	sp.boundTo("ours")
	time.Sleep(500 * time.Millisecond)
	p, err := e.client.CoreV1().Pods(sp.ns).Get(ctx(t), "theirs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" || len(p.Status.Conditions) != 0 {
		t.Fatalf("pod for other-scheduler was touched: node %q conditions %+v", p.Spec.NodeName, p.Status.Conditions)
	}
	e.run(t, "other-scheduler")
	sp.boundTo("theirs")

	// Two more schedulers named "racer": both see the same pods.
	r1, r2 := e.run(t, "racer"), e.run(t, "racer")
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { sp.pod(fmt.Sprintf("race-%d", i), schedulerName("racer")) })
	}
	wg.Wait()
	for i := range n {
		sp.boundTo(fmt.Sprintf("race-%d", i))
	}
	// Every successful binding is counted by the scheduler that made it;
	// a pod cannot be bound twice.
	deadline := time.Now().Add(5 * time.Second)
	bound := func() (int64, int64) { return r1.Stats().Scheduled, r2.Stats().Scheduled }
	for a, b := bound(); a+b != n && time.Now().Before(deadline); a, b = bound() {
		time.Sleep(20 * time.Millisecond)
	}
	if a, b := bound(); a+b != n {
		t.Errorf("bindings: %d + %d = %d, want %d", a, b, a+b, n)
	}
	a, b := bound()
	t.Logf("racers bound %d and %d pods", a, b)
	// A pod bound behind the scheduler's back is not bound again.
	binding := &v1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "race-0"}, Target: v1.ObjectReference{Kind: "Node", Name: sp.ns + "-a"}}
	if err := e.client.CoreV1().Pods(sp.ns).Bind(ctx(t), binding, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("binding a bound pod: %v, want Conflict", err)
	}
}
