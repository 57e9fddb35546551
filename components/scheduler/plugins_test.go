package scheduler

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func testNode(name, cpu, mem string, pods int) *v1.Node {
	rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem),
		v1.ResourcePods: *resource.NewQuantity(int64(pods), resource.DecimalSI)}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Status: v1.NodeStatus{Allocatable: rl, Capacity: rl,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
}

func testPod(name string, cpu, mem string) *v1.Pod {
	rl := v1.ResourceList{}
	if cpu != "" {
		rl[v1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		rl[v1.ResourceMemory] = resource.MustParse(mem)
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name)},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: rl}}}},
	}
}

func TestPodRequests(t *testing.T) {
	// max(sum of containers, each init container) + overhead.
	p := testPod("p", "1", "1Gi")
	p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: "d", Resources: v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m")}}})
	p.Spec.InitContainers = []v1.Container{{Name: "i", Resources: v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1"), v1.ResourceMemory: resource.MustParse("3Gi")}}}}
	p.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}
	pi := newPodInfo(p)
	if pi.req.milliCPU != 1600 || pi.req.memory != 3<<30 {
		t.Errorf("requests %+v, want 1600m cpu and 3Gi", pi.req)
	}
	// Scores count a container without requests as 100m / 200Mi.
	be := newPodInfo(testPod("be", "", ""))
	if be.req != (resources{}) || be.nonZero.milliCPU != 100 || be.nonZero.memory != 200<<20 {
		t.Errorf("best-effort pod: req %+v nonZero %+v", be.req, be.nonZero)
	}
}

func TestFitMessage(t *testing.T) {
	cpu := &status{reasons: []string{ReasonInsufficientCPU}, unresolvable: true}
	both := &status{reasons: []string{ReasonTooManyPods, ReasonInsufficientMem}}
	got := fitMessage(5, []*status{statusTaint, cpu, statusTaint, both, statusUnschedulable}, false)
	want := "0/5 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods, " +
		"1 node(s) were unschedulable, 2 node(s) had untolerated taint(s). " +
		"preemption: 0/5 nodes are available: 1 No preemption victims found for incoming pod, 4 Preemption is not helpful for scheduling."
	if got != want {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
	got = fitMessage(1, []*status{statusPorts}, true)
	want = "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. preemption: not eligible due to preemptionPolicy=Never."
	if got != want {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	for _, c := range []struct{ nodes, pct, want int }{
		{3, 0, 3}, {99, 0, 99}, {100, 0, 100}, {150, 0, 100}, {1000, 0, 420}, {5000, 0, 500},
		{10000, 0, 500}, {1000, 100, 1000}, {1000, 10, 100}, {1000, 30, 300},
	} {
		if got := numFeasibleNodesToFind(c.nodes, c.pct); got != c.want {
			t.Errorf("numFeasibleNodesToFind(%d, %d) = %d, want %d", c.nodes, c.pct, got, c.want)
		}
	}
}

func TestFilter(t *testing.T) {
	ni := newNodeInfo("n")
	ni.setNode(testNode("n", "2", "4Gi", 2))
	ni.addPod(newPodInfo(testPod("running", "1500m", "1Gi")))
	if st := filter(newPodSchedInfo(testPod("small", "500m", "1Gi")), ni); st != nil {
		t.Errorf("500m on a node with 500m free: %+v", st)
	}
	st := filter(newPodSchedInfo(testPod("big", "1", "4Gi")), ni)
	if st == nil || len(st.reasons) != 2 || st.reasons[0] != ReasonInsufficientCPU || st.reasons[1] != ReasonInsufficientMem || st.unresolvable {
		t.Errorf("1 cpu / 4Gi: %+v, want cpu and memory, resolvable", st)
	}
	if st := filter(newPodSchedInfo(testPod("huge", "3", "")), ni); st == nil || !st.unresolvable {
		t.Errorf("3 cpu on a 2-cpu node: %+v, want unresolvable", st)
	}
	ni.addPod(newPodInfo(testPod("second", "", "")))
	if st := filter(newPodSchedInfo(testPod("third", "", "")), ni); st == nil || st.reasons[0] != ReasonTooManyPods {
		t.Errorf("third pod on a 2-pod node: %+v", st)
	}
	ni.removePod(newPodInfo(testPod("second", "", "")))
	ni.removePod(newPodInfo(testPod("running", "1500m", "1Gi")))
	if ni.requested != (resources{}) || len(ni.pods) != 0 {
		t.Errorf("after removing every pod: requested %+v, %d pods", ni.requested, len(ni.pods))
	}

	// Taints, with the not-ready condition taint.
	node := testNode("n", "2", "4Gi", 10)
	node.Spec.Taints = []v1.Taint{{Key: "a", Value: "b", Effect: v1.TaintEffectPreferNoSchedule}}
	node.Status.Conditions[0].Status = v1.ConditionUnknown
	ni.setNode(node)
	p := testPod("p", "", "")
	if st := filter(newPodSchedInfo(p), ni); st != statusTaint {
		t.Errorf("Ready=Unknown node: %+v, want the untolerated-taint status", st)
	}
	p.Spec.Tolerations = []v1.Toleration{{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists}}
	if st := filter(newPodSchedInfo(p), ni); st != nil {
		t.Errorf("pod tolerating unreachable: %+v", st)
	}
	if s := score(newPodSchedInfo(p), ni); s.taints != 1 {
		t.Errorf("intolerable PreferNoSchedule taints %d, want 1", s.taints)
	}

	// Host ports: 0.0.0.0 overlaps every address; distinct IPs do not.
	withPort := func(name, ip string, port int32) *v1.Pod {
		p := testPod(name, "", "")
		p.Spec.Containers[0].Ports = []v1.ContainerPort{{HostPort: port, ContainerPort: port, HostIP: ip}}
		return p
	}
	ni = newNodeInfo("n")
	ni.setNode(testNode("n", "2", "4Gi", 10))
	ni.addPod(newPodInfo(withPort("a", "10.0.0.1", 80)))
	for _, c := range []struct {
		ip   string
		port int32
		ok   bool
	}{{"10.0.0.2", 80, true}, {"10.0.0.1", 80, false}, {"", 80, false}, {"10.0.0.1", 81, true}} {
		st := filter(newPodSchedInfo(withPort("b", c.ip, c.port)), ni)
		if (st == nil) != c.ok {
			t.Errorf("host port %s:%d next to 10.0.0.1:80: fits=%v, want %v", c.ip, c.port, st == nil, c.ok)
		}
	}
}

func TestScores(t *testing.T) {
	if got := leastRequested(500, 2000); got != 75 {
		t.Errorf("leastRequested(500, 2000) = %d", got)
	}
	if got := leastRequested(3000, 2000); got != 0 {
		t.Errorf("leastRequested over capacity = %d", got)
	}
	// cpu 50%, memory 10%: std 0.2 → 80.
	if got := balanced(resources{milliCPU: 1000, memory: 1 << 30}, resources{milliCPU: 2000, memory: 10 << 30}); got != 80 {
		t.Errorf("balanced = %d, want 80", got)
	}
	raw := []rawScores{
		{fit: 50, balanced: 100, affinity: 0, taints: 2, owners: 0},
		{fit: 50, balanced: 100, affinity: 10, taints: 0, owners: 2},
		{fit: 50, balanced: 100, affinity: 5, taints: 1, owners: 1},
	}
	out := make([]int64, 3)
	totals(raw, out)
	// fit+balanced 150; affinity ×2; taints ×3 reversed; spread ×2 reversed.
	want := []int64{150 + 0 + 0 + 200, 150 + 200 + 300 + 0, 150 + 100 + 150 + 100}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("totals[%d] = %d, want %d", i, out[i], want[i])
		}
	}
}

func TestCacheAssume(t *testing.T) {
	c := newSchedCache()
	c.setNode(testNode("n1", "2", "4Gi", 10))
	c.setNode(testNode("n2", "2", "4Gi", 10))
	p := testPod("p", "1", "")
	c.mu.Lock()
	c.assumeLocked(newPodInfo(p), "n1")
	c.mu.Unlock()
	if !c.isAssumed(p.UID) || c.nodes["n1"].requested.milliCPU != 1000 {
		t.Fatalf("assumed pod not accounted")
	}
	// The informer reports it bound elsewhere (another scheduler won):
	// the report wins, and forgetting the assumption changes nothing.
	bound := p.DeepCopy()
	bound.Spec.NodeName = "n2"
	c.setPod(bound)
	if c.forget(p.UID) != "" || c.nodes["n1"].requested.milliCPU != 0 || c.nodes["n2"].requested.milliCPU != 1000 {
		t.Errorf("after the informer's report: n1 %d n2 %d", c.nodes["n1"].requested.milliCPU, c.nodes["n2"].requested.milliCPU)
	}
	// A finished pod frees its node.
	done := bound.DeepCopy()
	done.Status.Phase = v1.PodSucceeded
	if c.setPod(done) != "n2" || c.nodes["n2"].requested.milliCPU != 0 {
		t.Errorf("finished pod still counted")
	}
	// Pods on a node not (yet) known are kept, and counted once it registers.
	q := testPod("q", "500m", "")
	q.Spec.NodeName = "n3"
	c.setPod(q)
	if len(c.list) != 2 {
		t.Fatalf("a pod's unknown node is offered")
	}
	c.setNode(testNode("n3", "2", "4Gi", 10))
	if len(c.list) != 3 || c.nodes["n3"].requested.milliCPU != 500 {
		t.Errorf("n3 registered: list %d, requested %d", len(c.list), c.nodes["n3"].requested.milliCPU)
	}
	c.removeNode("n1")
	if len(c.list) != 2 || c.nodes["n1"] != nil {
		t.Errorf("removed node still listed")
	}
	for i, ni := range c.list {
		if ni.index != i {
			t.Errorf("list[%d].index = %d", i, ni.index)
		}
	}
}

func TestQueueMoveIf(t *testing.T) {
	q := newSchedQueue(time.Hour, time.Hour) // backoffs never end within the test
	defer q.wq.ShutDown()
	small, big := newPodSchedInfo(testPod("small", "1", "")), newPodSchedInfo(testPod("big", "8", ""))
	q.backoff("ns/small", small)
	q.backoff("ns/big", big)
	q.backoff("ns/bind-failed", nil)
	ni := newNodeInfo("n")
	ni.setNode(testNode("n", "2", "4Gi", 10))
	q.moveIf(func(p *podSchedInfo) bool { return filter(p, ni) == nil })
	if q.wq.Len() != 2 || q.pending() != 1 {
		t.Fatalf("queued %d, waiting %d; want small and bind-failed queued, big waiting", q.wq.Len(), q.pending())
	}
	for range 2 {
		k, _ := q.wq.Get()
		if k != "ns/small" && k != "ns/bind-failed" {
			t.Errorf("queued %q", k)
		}
		q.wq.Done(k)
	}
	q.forget("ns/big")
	if q.pending() != 0 {
		t.Errorf("forgotten pod still waiting")
	}
}

// benchScheduler is a Scheduler over n nodes with ten pods each, every
// tenth node labelled tenth=true.
func benchScheduler(n, parallelism int) *Scheduler {
	s := &Scheduler{cfg: Config{Parallelism: parallelism}, cache: newSchedCache(), rnd: newTestRand()}
	for i := range n {
		node := testNode(fmt.Sprintf("n%d", i), "32", "64Gi", 110)
		node.Labels["tenth"] = fmt.Sprint(i%10 == 0)
		s.cache.setNode(node)
		for j := range 10 {
			p := testPod(fmt.Sprintf("p%d-%d", i, j), "100m", "128Mi")
			p.Spec.NodeName = node.Name
			s.cache.setPod(p)
		}
	}
	return s
}

func TestFindNodeParallel(t *testing.T) {
	s := benchScheduler(parallelThreshold+100, 2)
	pod := testPod("new", "100m", "128Mi")
	pod.Spec.NodeSelector = map[string]string{"tenth": "true"}
	p := newPodSchedInfo(pod)
	seen := map[string]bool{}
	for range 50 {
		ni, err := s.findNode(p)
		if err != nil {
			t.Fatal(err)
		}
		if ni.node.Labels["tenth"] != "true" {
			t.Fatalf("picked %s, which the selector excludes", ni.name)
		}
		seen[ni.name] = true
	}
	// The search resumes where the last stopped: picks move around.
	if len(seen) < 10 {
		t.Errorf("50 cycles picked only %d distinct nodes", len(seen))
	}
	pod.Spec.NodeSelector = map[string]string{"tenth": "never"}
	if _, err := s.findNode(newPodSchedInfo(pod)); err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("0/%d nodes are available: %d node(s) didn't match", parallelThreshold+100, parallelThreshold+100)) {
		t.Errorf("no fitting node: %v", err)
	}
}

// BenchmarkFindNode measures one scheduling cycle's filter and score (no
// API involved) for a pod every node fits and for one whose nodeSelector
// matches one node in ten, on 1,000 nodes and, with and without parallel
// filtering, on 5,000.
func BenchmarkFindNode(b *testing.B) {
	for _, sel := range []bool{false, true} {
		for _, c := range []struct{ nodes, par int }{{1000, 1}, {5000, 1}, {5000, 2}} {
			b.Run(fmt.Sprintf("selective=%v/nodes=%d/parallelism=%d", sel, c.nodes, c.par), func(b *testing.B) {
				s := benchScheduler(c.nodes, c.par)
				pod := testPod("new", "100m", "128Mi")
				if sel {
					pod.Spec.NodeSelector = map[string]string{"tenth": "true"}
				}
				p := newPodSchedInfo(pod)
				for b.Loop() {
					if _, err := s.findNode(p); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
