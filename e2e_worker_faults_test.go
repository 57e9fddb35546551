package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"synod/internal/launch"
)

// TestWorkerFaults: a worker keeps working when the master it joined
// through is SIGKILLed; a worker SIGKILLed and restarted adopts its running
// containers (same container IDs, no restarts); a worker that stays dead goes
// NotReady after the grace period and its pods come back on the other one.
func TestWorkerFaults(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (network namespaces, containerd)")
		}
		t.Skip("needs root")
	}
	requireTool(t, "containerd")
	requireTool(t, "nsenter")
	const grace = 15 * time.Second // the kubelet renews its Lease every 10s
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cl, err := launch.Start(ctx, launch.Options{Binary: synodBinary, Masters: 3, Workers: 2, API: true, Dir: keepOrTemp(t),
		StopTimeout: 10 * time.Second, ExtraArgs: []string{"--node-monitor-grace-period", grace.String(), "--node-monitor-period", "500ms"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Stop() })
	clients := perMasterClients(t, cl)
	poll := func(what string, timeout time.Duration, f func(client kubernetes.Interface) (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		last := ""
		for i := 0; ; i++ {
			ok, l := f(clients[i%len(clients)])
			if ok {
				return
			}
			last = l
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// readyStatus is the node's Ready condition status as one master
	// answers; "" when the question failed (a master just restarted), which
	// is neither Ready nor NotReady.
	readyStatus := func(client kubernetes.Interface, node string) v1.ConditionStatus {
		n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady {
				return c.Status
			}
		}
		return v1.ConditionUnknown
	}
	ready := func(client kubernetes.Interface, node string) bool {
		return readyStatus(client, node) == v1.ConditionTrue
	}
	notReady := func(client kubernetes.Interface, node string) bool {
		s := readyStatus(client, node)
		return s != "" && s != v1.ConditionTrue
	}
	poll("both workers Ready", 90*time.Second, func(c kubernetes.Interface) (bool, string) {
		return ready(c, "w1") && ready(c, "w2"), "not ready"
	})
	// Pods that leave an unreachable node after 2s, not the default 300s.
	tol := []v1.Toleration{
		{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](2)},
		{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](2)},
	}
	labels := map[string]string{"app": "sleepy"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "sleepy"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](4), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: v1.PodSpec{
			Tolerations: tol, TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []v1.Container{{Name: "c", Image: "busybox:synod-test", Command: []string{"sleep", "3600"}}}}}}}
	poll("create deployment", 20*time.Second, func(c kubernetes.Interface) (bool, string) {
		_, err := c.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{})
		return err == nil, fmt.Sprint(err)
	})
	running := func(c kubernetes.Interface) (map[string]string, map[string]int) { // pod -> containerID, node -> running count
		ids, per := map[string]string{}, map[string]int{}
		pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=sleepy"})
		if err != nil {
			return ids, per
		}
		for _, p := range pods.Items {
			if p.Status.Phase == v1.PodRunning && p.DeletionTimestamp == nil && len(p.Status.ContainerStatuses) == 1 {
				ids[p.Name] = fmt.Sprintf("%s/%s/%d", p.Spec.NodeName, p.Status.ContainerStatuses[0].ContainerID, p.Status.ContainerStatuses[0].RestartCount)
				per[p.Spec.NodeName]++
			}
		}
		return ids, per
	}
	poll("4 pods Running on both workers", 60*time.Second, func(c kubernetes.Interface) (bool, string) {
		_, per := running(c)
		return per["w1"]+per["w2"] == 4 && per["w1"] > 0 && per["w2"] > 0, fmt.Sprint(per)
	})

	// 1. SIGKILL m1, the first master the workers know: they stay Ready,
	// renewing their Leases through another master.
	if err := cl.Kill(0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	live := clients[1:]
	for _, node := range []string{"w1", "w2"} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			l, err := live[0].CoordinationV1().Leases("kube-node-lease").Get(ctx, node, metav1.GetOptions{})
			if err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(killed.Add(time.Second)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker %s did not renew its lease after m1 died (last %v, err %v)", node, l, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(grace) // one full grace period without m1
	for _, node := range []string{"w1", "w2"} {
		if !ready(live[0], node) {
			t.Errorf("%s not Ready %s after m1 was killed", node, grace)
		}
	}
	if err := cl.StartMaster(0); err != nil {
		t.Fatal(err)
	}

	// 2. SIGKILL w1's worker and restart it: its containers were never
	// stopped and are adopted.
	before, _ := running(live[0])
	w1Log := filepath.Join(cl.Dir(), "w1.log")
	logBefore, err := os.ReadFile(w1Log)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.KillWorker(0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cl.StartWorker(0); err != nil {
		t.Fatal(err)
	}
	poll("w1 Ready again after its restart", 30*time.Second, func(c kubernetes.Interface) (bool, string) { return ready(c, "w1"), "" })
	// Adopted containers keep their IDs and restart counts; a kubelet that
	// recreated them would report new IDs (or higher counts) and never match.
	poll("w1's pods adopted after its restart", 20*time.Second, func(c kubernetes.Interface) (bool, string) {
		after, _ := running(c)
		for pod, was := range before {
			if now := after[pod]; now != was {
				return false, fmt.Sprintf("pod %s: %s before the worker restart, %q after", pod, was, now)
			}
		}
		return true, ""
	})
	// ...and the restarted kubelet says so for each of them (the API
	// alone could still show the old kubelet's last report).
	poll("the restarted kubelet adopted w1's containers", 20*time.Second, func(kubernetes.Interface) (bool, string) {
		all, err := os.ReadFile(w1Log)
		if err != nil || len(all) < len(logBefore) {
			return false, fmt.Sprint(err)
		}
		since := string(all[len(logBefore):])
		for pod, was := range before {
			if !strings.HasPrefix(was, "w1/") {
				continue
			}
			id := strings.Split(strings.TrimPrefix(was, "w1/containerd://"), "/")[0]
			if !strings.Contains(since, "adopted running container") || !strings.Contains(since, id) {
				return false, fmt.Sprintf("no adoption of %s (%s) in w1.log since the restart", pod, id)
			}
		}
		return true, ""
	})

	// 3. SIGKILL w2's worker for good: NotReady after the grace period, and
	// its pods come back on w1.
	if err := cl.KillWorker(1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The grace period runs from the node's last heartbeat, which was up to
	// one renew interval (10s) before the kill.
	lease, err := live[0].CoordinationV1().Leases("kube-node-lease").Get(ctx, "w2", metav1.GetOptions{})
	if err != nil || lease.Spec.RenewTime == nil {
		t.Fatalf("w2's lease: %v %v", lease, err)
	}
	lastBeat := lease.Spec.RenewTime.Time
	poll("w2 NotReady", grace+15*time.Second, func(c kubernetes.Interface) (bool, string) {
		return notReady(c, "w2"), ""
	})
	if d := time.Since(lastBeat); d < grace-time.Second {
		t.Errorf("w2 NotReady %s after its last lease renewal, before the %s grace period", d, grace)
	}
	poll("4 pods Running on w1", 60*time.Second, func(c kubernetes.Interface) (bool, string) {
		_, per := running(c)
		return per["w1"] == 4, fmt.Sprint(per)
	})
}

func keepOrTemp(t *testing.T) string {
	if d := os.Getenv("SYNOD_KEEP_DIR"); d != "" {
		os.RemoveAll(d)
		return d
	}
	return filepath.Join(t.TempDir(), "c")
}
