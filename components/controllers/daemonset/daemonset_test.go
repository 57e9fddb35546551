package daemonset

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"synod/components/controller"
	"synod/internal/hollow"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

type env struct {
	t      *testing.T
	client kubernetes.Interface
	nodes  []*hollow.Kubelet
}

// start runs the daemonset controller and a test binder (standing in for
// the scheduler: it binds each unscheduled pod to the node its
// metadata.name affinity names) against a fresh cluster.
func start(t *testing.T) *env {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	testcluster.RunControllers(t, cc, New)
	startBinder(t, c.Client)
	return &env{t: t, client: c.Client}
}

func startBinder(t *testing.T, client kubernetes.Interface) {
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", "").String()
	}))
	bind := func(obj any) {
		p, ok := obj.(*v1.Pod)
		if !ok || p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
			return
		}
		if node := targetNode(p); node != "" {
			client.CoreV1().Pods(p.Namespace).Bind(ctx, &v1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, UID: p.UID},
				Target: v1.ObjectReference{Kind: "Node", Name: node}}, metav1.CreateOptions{})
		}
	}
	factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: bind, UpdateFunc: func(_, o any) { bind(o) }})
	factory.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
}

func (e *env) addNodes(specs ...hollow.NodeSpec) {
	e.t.Helper()
	k, err := hollow.Start(context.Background(), e.client, specs, hollow.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(k.Close)
	e.nodes = append(e.nodes, k)
}

// updateNode and updateDS change an object that controllers and kubelets
// write too: on a conflict they read it again and retry.
func (e *env) updateNode(name string, change func(*v1.Node)) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := e.client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(n)
		_, err = e.client.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) updateDS(name string, change func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	e.t.Helper()
	var out *appsv1.DaemonSet
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ds, err := e.client.AppsV1().DaemonSets("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(ds)
		out, err = e.client.AppsV1().DaemonSets("default").Update(context.Background(), ds, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func newDS(name string, selector map[string]string) *appsv1.DaemonSet {
	labels := map[string]string{"app": name}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{NodeSelector: selector,
					Containers: []v1.Container{{Name: "c", Image: "agent:1"}}},
			},
		},
	}
}

// podsByNode lists the DaemonSet's live pods by node.
func (e *env) podsByNode(name string) map[string][]v1.Pod {
	e.t.Helper()
	list, err := e.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]v1.Pod{}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out[targetNode(&p)] = append(out[targetNode(&p)], p)
		}
	}
	return out
}

// waitPlacement waits until the DaemonSet has exactly one running pod on
// each of nodes and none elsewhere.
func (e *env) waitPlacement(name string, nodes ...string) map[string][]v1.Pod {
	e.t.Helper()
	sort.Strings(nodes)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := e.podsByNode(name)
		var have []string
		ok := len(got) == len(nodes)
		for n, pods := range got {
			have = append(have, fmt.Sprintf("%s:%d", n, len(pods)))
			ok = ok && len(pods) == 1 && pods[0].Status.Phase == v1.PodRunning && pods[0].Spec.NodeName == n
		}
		for _, n := range nodes {
			ok = ok && len(got[n]) == 1
		}
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			sort.Strings(have)
			e.t.Fatalf("daemonset %s: pods on %v, want one running on each of %v", name, have, nodes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) waitStatus(name string, what string, ok func(appsv1.DaemonSetStatus, *appsv1.DaemonSet) bool) *appsv1.DaemonSet {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ds, err := e.client.AppsV1().DaemonSets("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		if ok(ds.Status, ds) {
			return ds
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("daemonset %s: no %s; status %+v", name, what, ds.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPlacement: one pod per eligible node (nodeSelector, taints,
// cordoned nodes included); nodes that come, go or change are followed.
func TestPlacement(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	worker := map[string]string{"role": "worker"}
	e.addNodes(
		hollow.NodeSpec{Name: "n1", Labels: worker},
		hollow.NodeSpec{Name: "n2", Labels: worker},
		hollow.NodeSpec{Name: "n3", Labels: map[string]string{"role": "db"}},
		hollow.NodeSpec{Name: "n4", Labels: worker, Taints: []v1.Taint{{Key: "dedicated", Value: "gpu", Effect: v1.TaintEffectNoSchedule}}},
		hollow.NodeSpec{Name: "n5", Labels: worker},
	)
	// A cordoned node still runs daemons.
	e.updateNode("n5", func(n *v1.Node) {
		n.Spec.Unschedulable = true
		n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule})
	})
	ds, err := e.client.AppsV1().DaemonSets("default").Create(ctx, newDS("agent", worker), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	placed := e.waitPlacement("agent", "n1", "n2", "n5")
	e.waitStatus("agent", "full status", func(s appsv1.DaemonSetStatus, d *appsv1.DaemonSet) bool {
		return s.DesiredNumberScheduled == 3 && s.CurrentNumberScheduled == 3 && s.NumberReady == 3 && s.NumberAvailable == 3 &&
			s.UpdatedNumberScheduled == 3 && s.NumberMisscheduled == 0 && s.NumberUnavailable == 0 && s.ObservedGeneration == d.Generation
	})
	p := placed["n1"][0]
	if ref := metav1.GetControllerOf(&p); ref == nil || ref.UID != ds.UID || ref.Kind != "DaemonSet" {
		t.Errorf("pod owner %+v", ref)
	}
	if p.Labels[hashLabel] == "" {
		t.Errorf("pod has no %s label", hashLabel)
	}
	terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchFields) != 1 || terms[0].MatchFields[0].Key != "metadata.name" || terms[0].MatchFields[0].Values[0] != "n1" {
		t.Errorf("pod affinity %+v", terms)
	}
	want := map[string]v1.TaintEffect{v1.TaintNodeNotReady: v1.TaintEffectNoExecute, v1.TaintNodeUnreachable: v1.TaintEffectNoExecute,
		v1.TaintNodeDiskPressure: v1.TaintEffectNoSchedule, v1.TaintNodeMemoryPressure: v1.TaintEffectNoSchedule,
		v1.TaintNodePIDPressure: v1.TaintEffectNoSchedule, v1.TaintNodeUnschedulable: v1.TaintEffectNoSchedule}
	for _, tol := range p.Spec.Tolerations {
		if want[tol.Key] == tol.Effect && tol.Operator == v1.TolerationOpExists && tol.TolerationSeconds == nil {
			delete(want, tol.Key)
		}
	}
	if len(want) > 0 {
		t.Errorf("daemon tolerations missing %v: %+v", want, p.Spec.Tolerations)
	}

	// New eligible node: new pod. Deleted node: its pod goes. Relabelled
	// node: its pod goes.
	e.addNodes(hollow.NodeSpec{Name: "n6", Labels: worker})
	e.waitPlacement("agent", "n1", "n2", "n5", "n6")
	if err := e.client.CoreV1().Nodes().Delete(ctx, "n2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.updateNode("n1", func(n *v1.Node) { n.Labels["role"] = "db" })
	e.waitPlacement("agent", "n5", "n6")
	e.waitStatus("agent", "status after node changes", func(s appsv1.DaemonSetStatus, _ *appsv1.DaemonSet) bool {
		return s.DesiredNumberScheduled == 2 && s.CurrentNumberScheduled == 2 && s.NumberMisscheduled == 0 && s.NumberReady == 2
	})
	// Gone from the API too, not just terminating (n2's pod has no kubelet
	// to confirm anything).
	list, err := e.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if p.Spec.NodeName == "n2" {
			t.Errorf("pod %s of deleted node n2 still there (deletionTimestamp %v)", p.Name, p.DeletionTimestamp)
		}
	}
	evs, err := e.client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.name": "agent"}.String()})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, ev := range evs.Items {
		if ev.Source.Component == component {
			reasons[ev.Reason]++
		}
	}
	if reasons["SuccessfulCreate"] < 4 || reasons["SuccessfulDelete"] < 1 {
		t.Errorf("events by reason: %v", reasons)
	}
}

// TestRollingUpdate: a template change replaces every pod while never more
// than maxUnavailable nodes lack an available pod.
func TestRollingUpdate(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	var specs []hollow.NodeSpec
	var names []string
	for i := range 5 {
		names = append(names, fmt.Sprint("n", i))
		specs = append(specs, hollow.NodeSpec{Name: names[i]})
	}
	e.addNodes(specs...)
	ds := newDS("roll", nil)
	ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(2))}}
	if _, err := e.client.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPlacement("roll", names...)
	e.waitStatus("roll", "all available", func(s appsv1.DaemonSetStatus, _ *appsv1.DaemonSet) bool { return s.NumberAvailable == 5 })

	worst := watchUnavailable(t, e.client, "roll", names)
	cur := e.updateDS("roll", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "agent:2" })
	hash := templateHash(cur)
	e.waitStatus("roll", "rollout", func(s appsv1.DaemonSetStatus, d *appsv1.DaemonSet) bool {
		return s.ObservedGeneration == d.Generation && s.UpdatedNumberScheduled == 5 && s.NumberAvailable == 5
	})
	placed := e.waitPlacement("roll", names...)
	for n, pods := range placed {
		if pods[0].Labels[hashLabel] != hash || pods[0].Spec.Containers[0].Image != "agent:2" {
			t.Errorf("pod on %s: hash %s image %s, want %s agent:2", n, pods[0].Labels[hashLabel], pods[0].Spec.Containers[0].Image, hash)
		}
	}
	t.Logf("at worst %d of 5 nodes without an available pod during the rollout", worst())
	if w := worst(); w > 2 || w == 0 {
		t.Errorf("at worst %d nodes without an available pod during the rollout; want 1..2 (maxUnavailable 2)", w)
	}

	// OnDelete: a template change replaces nothing until a pod is deleted.
	e.updateDS("roll", func(ds *appsv1.DaemonSet) {
		ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
		ds.Spec.Template.Spec.Containers[0].Image = "agent:3"
	})
	e.waitStatus("roll", "observed OnDelete change", func(s appsv1.DaemonSetStatus, d *appsv1.DaemonSet) bool {
		return s.ObservedGeneration == d.Generation && s.UpdatedNumberScheduled == 0
	})
	time.Sleep(300 * time.Millisecond)
	before := e.waitPlacement("roll", names...)
	for n, pods := range before {
		if pods[0].Spec.Containers[0].Image != "agent:2" {
			t.Fatalf("OnDelete replaced the pod on %s", n)
		}
	}
	victim := before["n0"][0]
	if err := e.client.CoreV1().Pods("default").Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := e.podsByNode("roll")["n0"]
		if len(got) == 1 && got[0].Name != victim.Name && got[0].Spec.Containers[0].Image == "agent:3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent:3 replacement on n0: %d pods", len(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.waitStatus("roll", "one updated", func(s appsv1.DaemonSetStatus, _ *appsv1.DaemonSet) bool {
		return s.UpdatedNumberScheduled == 1 && s.NumberAvailable == 5
	})
}

// watchUnavailable follows the DaemonSet's pods and returns a function
// reporting the most nodes seen at once without a ready, non-terminating
// pod.
func watchUnavailable(t *testing.T, client kubernetes.Interface, name string, nodes []string) func() int {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	pods := map[string]*v1.Pod{}
	worst, primed := 0, false
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*v1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			if ev.Type == watch.Deleted {
				delete(pods, p.Name)
			} else {
				pods[p.Name] = p
			}
			ok2 := map[string]bool{}
			for _, q := range pods {
				if q.DeletionTimestamp == nil && controller.IsPodReady(q) {
					ok2[q.Spec.NodeName] = true
				}
			}
			down := 0
			for _, n := range nodes {
				if !ok2[n] {
					down++
				}
			}
			// The existing pods arrive as ADDED events one by one:
			// count only once all of them are in.
			primed = primed || len(pods) >= len(nodes)
			if primed {
				worst = max(worst, down)
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		w.Stop()
		<-done
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return worst
	}
}

// TestRollingUpdateSurge: with maxSurge 1 and maxUnavailable 0 the new pod
// starts next to the old one, so no node is ever without an available pod.
func TestRollingUpdateSurge(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	names := []string{"s0", "s1", "s2"}
	e.addNodes(hollow.NodeSpec{Name: "s0"}, hollow.NodeSpec{Name: "s1"}, hollow.NodeSpec{Name: "s2"})
	ds := newDS("surge", nil)
	ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))}}
	if _, err := e.client.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPlacement("surge", names...)
	e.waitStatus("surge", "all available", func(s appsv1.DaemonSetStatus, _ *appsv1.DaemonSet) bool { return s.NumberAvailable == 3 })
	worst := watchUnavailable(t, e.client, "surge", names)
	e.updateDS("surge", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "agent:2" })
	e.waitStatus("surge", "rollout", func(s appsv1.DaemonSetStatus, d *appsv1.DaemonSet) bool {
		return s.ObservedGeneration == d.Generation && s.UpdatedNumberScheduled == 3 && s.NumberAvailable == 3
	})
	for n, pods := range e.waitPlacement("surge", names...) {
		if pods[0].Spec.Containers[0].Image != "agent:2" {
			t.Errorf("pod on %s runs %s", n, pods[0].Spec.Containers[0].Image)
		}
	}
	if w := worst(); w != 0 {
		t.Errorf("%d nodes at once without an available pod; maxUnavailable is 0", w)
	}
}
