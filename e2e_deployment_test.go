package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// TestDeploymentWithKubectl is the first done-when, as a user would
// do it: kubectl against three masters (scheduler and controller-manager
// elected among them) and three hollow nodes. A client-go watch checks the
// rolling updates' bounds on every pod event while they run.
func TestDeploymentWithKubectl(t *testing.T) {
	c := startAPICluster(t, 3)
	startHollowNodes(t, c, "node-1", "--count", "3", "--name-prefix", "node-")
	client := failoverClient(t, c)
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := kubectlOn(t, c, "", "", args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	rolloutStatus := func() {
		t.Helper()
		out := kubectl("rollout", "status", "deployment/web", "--timeout=60s")
		if !strings.Contains(out, `deployment "web" successfully rolled out`) {
			t.Fatalf("rollout status: %s", out)
		}
	}

	kubectl("create", "deployment", "web", "--image=busybox", "--replicas=5")
	rolloutStatus()
	pods := deploymentWaitPods(t, client, 5)
	nodes := map[string]int{}
	for _, p := range pods {
		nodes[p.Spec.NodeName]++
	}
	t.Logf("5 pods on nodes %v", nodes)
	if len(nodes) < 2 {
		t.Fatalf("5 pods all on one node: %v", nodes)
	}
	first := deploymentReplicaSets(t, client)
	if len(first) != 1 {
		t.Fatalf("replicasets: %s", deploymentDescribe(first))
	}
	deploymentWaitEvent(t, client, fmt.Sprintf("Scaled up replica set %s from 0 to 5", first[0].Name))

	kubectl("scale", "deployment", "web", "--replicas=10")
	rolloutStatus()
	deploymentWaitPods(t, client, 10)
	kubectl("scale", "deployment", "web", "--replicas=2")
	rolloutStatus()
	deploymentWaitPods(t, client, 2)

	// 2 replicas with the default 25%: surge 1 (rounded up), unavailable 0
	// (rounded down): at every moment 2 available pods and at most 3.
	w := deploymentWatchBounds(t, client, 3, 2)
	kubectl("set", "image", "deployment/web", "busybox=busybox:2")
	rolloutStatus()
	w.waitImage(t, "busybox:2", 2)
	t.Logf("set image: %d pod events checked", w.stop(t))
	rss := deploymentReplicaSets(t, client)
	if len(rss) != 2 || rss[1].Spec.Template.Spec.Containers[0].Image != "busybox:2" || *rss[0].Spec.Replicas != 0 {
		t.Fatalf("after set image: %s", deploymentDescribe(rss))
	}

	// kubectl rollout undo copies the previous ReplicaSet's template back;
	// the controller makes that ReplicaSet current as revision 3.
	w = deploymentWatchBounds(t, client, 3, 2)
	kubectl("rollout", "undo", "deployment/web")
	rolloutStatus()
	w.waitImage(t, "busybox", 2)
	w.stop(t)
	d, err := client.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "busybox" || d.Annotations["deployment.kubernetes.io/revision"] != "3" {
		t.Fatalf("after undo: image %q, annotations %v", img, d.Annotations)
	}
	rss = deploymentReplicaSets(t, client)
	if len(rss) != 2 || rss[1].Name != first[0].Name || rss[1].Annotations["deployment.kubernetes.io/revision-history"] != "1" {
		t.Fatalf("after undo: %s", deploymentDescribe(rss))
	}
	hist := kubectl("rollout", "history", "deployment/web")
	if !strings.Contains(hist, "\n2 ") || !strings.Contains(hist, "\n3 ") || strings.Contains(hist, "\n1 ") {
		t.Fatalf("rollout history:\n%s", hist)
	}

	// Pause, two changes, resume: one rollout, one new ReplicaSet.
	kubectl("rollout", "pause", "deployment/web")
	kubectl("set", "image", "deployment/web", "busybox=busybox:3")
	kubectl("set", "env", "deployment/web", "MODE=x")
	deploymentWaitObserved(t, client)
	if rss := deploymentReplicaSets(t, client); len(rss) != 2 {
		t.Fatalf("a paused deployment rolled out: %s", deploymentDescribe(rss))
	}
	kubectl("rollout", "resume", "deployment/web")
	rolloutStatus()
	rss = deploymentReplicaSets(t, client)
	if len(rss) != 3 {
		t.Fatalf("after resume: %s", deploymentDescribe(rss))
	}
	if c := rss[2].Spec.Template.Spec.Containers[0]; c.Image != "busybox:3" || len(c.Env) != 1 || c.Env[0].Name != "MODE" {
		t.Fatalf("the resumed rollout's template: %+v", c)
	}

	// rollout restart changes a template annotation: one more rollout.
	kubectl("rollout", "restart", "deployment/web")
	rolloutStatus()
	if rss := deploymentReplicaSets(t, client); len(rss) != 4 || rss[3].Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Fatalf("after restart: %s", deploymentDescribe(rss))
	}
	deploymentWaitPods(t, client, 2)
}

// deploymentWaitPods waits until web has n active pods, all bound and
// Ready, and returns them.
func deploymentWaitPods(t *testing.T, client kubernetes.Interface, n int) []v1.Pod {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		list, err := client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
		var ready []v1.Pod
		total := 0
		if err == nil {
			for _, p := range list.Items {
				if p.DeletionTimestamp != nil {
					continue
				}
				total++
				if p.Spec.NodeName != "" && deploymentPodReady(&p) {
					ready = append(ready, p)
				}
			}
			if total == n && len(ready) == n {
				return ready
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("web: %d pods, %d bound and ready; want %d (err %v)", total, len(ready), n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func deploymentPodReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// deploymentReplicaSets lists web's ReplicaSets by revision.
func deploymentReplicaSets(t *testing.T, client kubernetes.Interface) []appsv1.ReplicaSet {
	t.Helper()
	list, err := client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	rev := func(rs appsv1.ReplicaSet) int {
		var n int
		fmt.Sscan(rs.Annotations["deployment.kubernetes.io/revision"], &n)
		return n
	}
	sort.Slice(list.Items, func(i, j int) bool { return rev(list.Items[i]) < rev(list.Items[j]) })
	return list.Items
}

func deploymentDescribe(rss []appsv1.ReplicaSet) string {
	var parts []string
	for _, rs := range rss {
		parts = append(parts, fmt.Sprintf("%s(rev %s, %s, %d/%d)", rs.Name, rs.Annotations["deployment.kubernetes.io/revision"],
			rs.Spec.Template.Spec.Containers[0].Image, rs.Status.Replicas, *rs.Spec.Replicas))
	}
	return strings.Join(parts, ", ")
}

// deploymentWaitObserved waits until the controller has seen web's latest
// spec.
func deploymentWaitObserved(t *testing.T, client kubernetes.Interface) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := client.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
		if err == nil && d.Status.ObservedGeneration == d.Generation {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("web's generation never observed (err %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deploymentWaitEvent waits for a ScalingReplicaSet event about web with
// message msg from the deployment controller.
func deploymentWaitEvent(t *testing.T, client kubernetes.Interface, msg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "web").String()})
		var seen []string
		if err == nil {
			for _, ev := range list.Items {
				if ev.Reason == "ScalingReplicaSet" && ev.Source.Component == "deployment-controller" {
					if ev.Message == msg {
						return
					}
					seen = append(seen, ev.Message)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event %q; saw %q (err %v)", msg, seen, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deploymentBounds watches web's pods and checks after every event that
// at most maxTotal are active and at least minAvailable are Ready.
type deploymentBounds struct {
	mu        sync.Mutex
	pods      map[string]*v1.Pod
	events    int
	violation string
	stopped   bool
	w         watch.Interface
	done      chan struct{}
}

func deploymentWatchBounds(t *testing.T, client kubernetes.Interface, maxTotal, minAvailable int) *deploymentBounds {
	t.Helper()
	ctx := context.Background()
	opts := metav1.ListOptions{LabelSelector: "app=web"}
	list, err := client.CoreV1().Pods("default").List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := &deploymentBounds{pods: map[string]*v1.Pod{}, done: make(chan struct{})}
	for i := range list.Items {
		b.pods[list.Items[i].Name] = &list.Items[i]
	}
	check := func() string {
		total, available := 0, 0
		for _, p := range b.pods {
			if p.DeletionTimestamp == nil && p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed {
				total++
				if deploymentPodReady(p) {
					available++
				}
			}
		}
		if total > maxTotal || available < minAvailable {
			return fmt.Sprintf("%d pods, %d available (bounds: at most %d, at least %d available)", total, available, maxTotal, minAvailable)
		}
		return ""
	}
	if v := check(); v != "" {
		t.Fatalf("before the rollout: %s", v)
	}
	opts.ResourceVersion = list.ResourceVersion
	if b.w, err = client.CoreV1().Pods("default").Watch(ctx, opts); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(b.done)
		for ev := range b.w.ResultChan() {
			b.mu.Lock()
			p, ok := ev.Object.(*v1.Pod)
			switch {
			case !ok:
				if !b.stopped && b.violation == "" {
					b.violation = fmt.Sprintf("watch error: %v", ev.Object)
				}
			case ev.Type == watch.Deleted:
				delete(b.pods, p.Name)
			default:
				b.pods[p.Name] = p
			}
			b.events++
			if v := check(); v != "" && b.violation == "" && ok {
				b.violation = fmt.Sprintf("after event %d (%s %s): %s", b.events, ev.Type, p.Name, v)
			}
			b.mu.Unlock()
		}
		b.mu.Lock()
		if !b.stopped && b.violation == "" {
			b.violation = "the pod watch ended during the rollout"
		}
		b.mu.Unlock()
	}()
	t.Cleanup(b.w.Stop)
	return b
}

// waitImage waits until the watch shows exactly n pods, all running image.
func (b *deploymentBounds) waitImage(t *testing.T, image string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b.mu.Lock()
		good := len(b.pods) == n
		for _, p := range b.pods {
			good = good && p.Spec.Containers[0].Image == image && deploymentPodReady(p)
		}
		b.mu.Unlock()
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods never became %d of %s", n, image)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the watch, fails the test if a bound was broken, and returns
// how many events were checked.
func (b *deploymentBounds) stop(t *testing.T) int {
	t.Helper()
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.w.Stop()
	<-b.done
	if b.violation != "" {
		t.Fatal(b.violation)
	}
	return b.events
}
