package nodelifecycle

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"synod/internal/hollow"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

const (
	testPeriod = 200 * time.Millisecond
	testGrace  = 2 * time.Second
	testRenew  = 200 * time.Millisecond
)

// startController runs the node lifecycle controller in-process against a
// fresh one-master cluster, with hollow nodes named names.
func startController(t *testing.T, names ...string) (*testcluster.Cluster, *hollow.Kubelet) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	cc.Options.NodeMonitorPeriod, cc.Options.NodeMonitorGracePeriod = testPeriod, testGrace
	testcluster.RunControllers(t, cc, New)
	return c, startNodes(t, c.Client, names...)
}

func startNodes(t *testing.T, client kubernetes.Interface, names ...string) *hollow.Kubelet {
	t.Helper()
	specs := make([]hollow.NodeSpec, len(names))
	for i, n := range names {
		specs[i] = hollow.NodeSpec{Name: n}
	}
	k, err := hollow.Start(context.Background(), client, specs, hollow.Options{LeaseRenewInterval: testRenew})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// poll calls f every 50ms until it returns true or timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := f()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getNode(t *testing.T, client kubernetes.Interface, name string) *v1.Node {
	t.Helper()
	n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hasTaint(n *v1.Node, key string, effect v1.TaintEffect) *v1.Taint {
	for i := range n.Spec.Taints {
		if n.Spec.Taints[i].Key == key && n.Spec.Taints[i].Effect == effect {
			return &n.Spec.Taints[i]
		}
	}
	return nil
}

// boundPod creates a pod bound straight to node (no scheduler here).
func boundPod(t *testing.T, client kubernetes.Interface, name, node string, tolerations ...v1.Toleration) *v1.Pod {
	t.Helper()
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.PodSpec{NodeName: node, Tolerations: tolerations,
			Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
	}
	p, err := client.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "pod "+name+" running", func() (bool, error) {
		p, err = client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == v1.PodRunning, err
	})
	return p
}

// deletedAt reports whether the pod is being deleted (or gone).
func deleted(client kubernetes.Interface, name string) (bool, error) {
	p, err := client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return p.DeletionTimestamp != nil, nil
}

func tolerate(key string, seconds *int64) v1.Toleration {
	return v1.Toleration{Key: key, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: seconds}
}

func events(t *testing.T, client kubernetes.Interface, ns, reason, name string) []v1.Event {
	t.Helper()
	list, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.Set{"reason": reason, "involvedObject.name": name}.String()})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// TestNodeUnknownAfterGrace stops one node's heartbeat: the node must keep
// Ready=True through most of the grace period, then get Unknown conditions
// and the unreachable taints; when its kubelet comes back the taints go.
func TestNodeUnknownAfterGrace(t *testing.T) {
	c, kubelet := startController(t, "n1", "n2")
	client := c.Client
	// Both nodes are seen healthy first.
	time.Sleep(3 * testPeriod)
	for _, n := range []string{"n1", "n2"} {
		if s := readyStatus(getNode(t, client, n)); s != v1.ConditionTrue {
			t.Fatalf("node %s Ready=%s before anything happened", n, s)
		}
	}
	p := boundPod(t, client, "p1", "n1", tolerate(v1.TaintNodeUnreachable, nil))

	kubelet.StopNode("n1")
	stopped := time.Now()
	// The last renewal may be up to one renew interval old and the
	// controller looks once a period: before grace - renew - period the
	// node must still be Ready.
	notBefore := stopped.Add(testGrace - testRenew - testPeriod - 100*time.Millisecond)
	for time.Now().Before(notBefore) {
		n := getNode(t, client, "n1")
		if s := readyStatus(n); s != v1.ConditionTrue {
			t.Fatalf("node n1 Ready=%s only %s after its heartbeat stopped (grace %s)", s, time.Since(stopped), testGrace)
		}
		if hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoExecute) != nil {
			t.Fatalf("node n1 tainted only %s after its heartbeat stopped", time.Since(stopped))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var n1 *v1.Node
	poll(t, testGrace+2*time.Second, "n1 unknown and tainted", func() (bool, error) {
		n1 = getNode(t, client, "n1")
		return readyStatus(n1) == v1.ConditionUnknown &&
			hasTaint(n1, v1.TaintNodeUnreachable, v1.TaintEffectNoExecute) != nil &&
			hasTaint(n1, v1.TaintNodeUnreachable, v1.TaintEffectNoSchedule) != nil, nil
	})
	t.Logf("n1 unknown and tainted %s after its heartbeat stopped", time.Since(stopped).Round(time.Millisecond))
	for _, ct := range monitoredConditions {
		cond := nodeCondition(n1, ct)
		if cond == nil || cond.Status != v1.ConditionUnknown || cond.Reason != reasonUnknown || cond.Message != messageUnknown {
			t.Errorf("condition %s = %+v, want Unknown/%s/%q", ct, cond, reasonUnknown, messageUnknown)
		}
	}
	if taint := hasTaint(n1, v1.TaintNodeUnreachable, v1.TaintEffectNoExecute); taint.TimeAdded == nil {
		t.Errorf("unreachable NoExecute taint without timeAdded")
	}
	if s := readyStatus(getNode(t, client, "n2")); s != v1.ConditionTrue {
		t.Errorf("healthy node n2 Ready=%s", s)
	}
	// The pod on the dead node is not ready any more; it tolerates the
	// taint forever, so it stays.
	poll(t, 5*time.Second, "p1 not ready", func() (bool, error) {
		p, err := client.CoreV1().Pods("default").Get(context.Background(), p.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cond := podReady(p)
		return cond == v1.ConditionFalse && p.DeletionTimestamp == nil, nil
	})
	poll(t, 5*time.Second, "NodeNotReady event", func() (bool, error) {
		evs := events(t, client, "default", "NodeNotReady", "n1")
		return len(evs) > 0 && evs[0].Message == "Node n1 status is now: NodeNotReady" && evs[0].Source.Component == nodeComponent, nil
	})

	// The kubelet comes back: it posts Ready again and the taints go.
	startNodes(t, client, "n1")
	poll(t, 5*time.Second, "n1 ready and untainted", func() (bool, error) {
		n := getNode(t, client, "n1")
		return readyStatus(n) == v1.ConditionTrue &&
			hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoExecute) == nil &&
			hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoSchedule) == nil, nil
	})
	// And it stays healthy while it heartbeats.
	time.Sleep(testGrace + 2*testPeriod)
	if n := getNode(t, client, "n1"); readyStatus(n) != v1.ConditionTrue || len(n.Spec.Taints) != 0 {
		t.Fatalf("recovered node n1: Ready=%s taints=%v", readyStatus(n), n.Spec.Taints)
	}
}

func podReady(p *v1.Pod) v1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status
		}
	}
	return ""
}

// TestTaintEviction checks eviction on a live node (a NoExecute taint added
// by hand) and on a dead one (the unreachable taint).
func TestTaintEviction(t *testing.T) {
	c, kubelet := startController(t, "n1", "n2")
	client := c.Client
	ctx := context.Background()

	const key = "example.com/maintenance"
	plain := boundPod(t, client, "plain", "n1")
	brief := boundPod(t, client, "brief", "n1", tolerate(key, ptr.To[int64](2)))
	forever := boundPod(t, client, "forever", "n1", tolerate(key, nil))

	// Taint n1 by hand with a whole-second timeAdded (the API keeps
	// seconds), so "2s after timeAdded" is exact.
	added := time.Now().Truncate(time.Second)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error { // the kubelet writes the node too
		n1 := getNode(t, client, "n1")
		n1.Spec.Taints = append(n1.Spec.Taints, v1.Taint{Key: key, Effect: v1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: added}})
		_, err := client.CoreV1().Nodes().Update(ctx, n1, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 3*time.Second, "untolerating pod evicted", func() (bool, error) { return deleted(client, plain.Name) })
	if d := time.Since(added); d > 2*time.Second {
		t.Errorf("pod without toleration evicted %s after the taint", d)
	}
	for time.Since(added) < 1900*time.Millisecond {
		if gone, err := deleted(client, brief.Name); err != nil || gone {
			t.Fatalf("pod tolerating for 2s deleted after %s (err %v)", time.Since(added), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	poll(t, 3*time.Second, "pod tolerating 2s evicted", func() (bool, error) { return deleted(client, brief.Name) })
	t.Logf("pod tolerating 2s evicted %s after timeAdded", time.Since(added).Round(time.Millisecond))
	if gone, err := deleted(client, forever.Name); err != nil || gone {
		t.Fatalf("pod tolerating forever was evicted (err %v)", err)
	}
	evs := events(t, client, "default", "TaintManagerEviction", brief.Name)
	if len(evs) == 0 || evs[0].Message != "Marking for deletion Pod default/brief" || evs[0].Source.Component != evictionComponent {
		t.Errorf("TaintManagerEviction events for brief: %+v", evs)
	}

	// A dead node: pods tolerate unreachable for 2s (as a deployment's pods
	// would with a small tolerationSeconds) or forever.
	dying := boundPod(t, client, "dying", "n2", tolerate(v1.TaintNodeUnreachable, ptr.To[int64](2)))
	staying := boundPod(t, client, "staying", "n2", tolerate(v1.TaintNodeUnreachable, nil))
	kubelet.StopNode("n2")
	var taint *v1.Taint
	poll(t, testGrace+3*time.Second, "n2 tainted unreachable", func() (bool, error) {
		taint = hasTaint(getNode(t, client, "n2"), v1.TaintNodeUnreachable, v1.TaintEffectNoExecute)
		return taint != nil, nil
	})
	if taint.TimeAdded == nil {
		t.Fatal("unreachable taint without timeAdded")
	}
	start := taint.TimeAdded.Time
	for time.Since(start) < 1900*time.Millisecond {
		if gone, err := deleted(client, dying.Name); err != nil || gone {
			t.Fatalf("pod tolerating unreachable for 2s deleted %s after the taint (err %v)", time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	poll(t, 4*time.Second, "pod on dead node evicted", func() (bool, error) { return deleted(client, dying.Name) })
	t.Logf("pod on dead node evicted %s after the taint's timeAdded", time.Since(start).Round(time.Millisecond))
	// Nobody confirms the delete on a dead node: the pod stays Terminating
	// (its controller replaces it meanwhile). The other pod stays.
	p, err := client.CoreV1().Pods("default").Get(ctx, dying.Name, metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("evicted pod on dead node: %v %v", p, err)
	}
	if c := podCondition(p, v1.DisruptionTarget); c == nil || c.Reason != "DeletionByTaintManager" {
		t.Errorf("evicted pod has no DisruptionTarget condition: %+v", p.Status.Conditions)
	}
	if gone, err := deleted(client, staying.Name); err != nil || gone {
		t.Fatalf("pod tolerating unreachable forever was evicted (err %v)", err)
	}
}

func podCondition(p *v1.Pod, t v1.PodConditionType) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// TestNeverHeartbeated: a node registered without a Lease or Ready
// condition goes Unknown one grace period after the controller first saw it.
func TestNeverHeartbeated(t *testing.T) {
	c, _ := startController(t)
	client := c.Client
	created := time.Now()
	if _, err := client.CoreV1().Nodes().Create(context.Background(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ghost"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var n *v1.Node
	poll(t, testGrace+3*time.Second, "ghost unknown", func() (bool, error) {
		n = getNode(t, client, "ghost")
		return readyStatus(n) == v1.ConditionUnknown && hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoExecute) != nil, nil
	})
	if d := time.Since(created); d < testGrace {
		t.Errorf("ghost marked unknown after %s, before the grace period %s", d, testGrace)
	}
	if cond := nodeCondition(n, v1.NodeReady); cond.Reason != reasonNeverUpdated || cond.Message != messageNeverPosted {
		t.Errorf("Ready = %+v, want %s", cond, reasonNeverUpdated)
	}
}
