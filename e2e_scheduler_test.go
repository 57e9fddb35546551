package main

import (
	"strings"
	"testing"
	"time"

	"synod/internal/launch"
)

const schedulerBigPod = `apiVersion: v1
kind: Pod
metadata:
  name: big
spec:
  containers:
  - name: c
    image: local/busybox:1
    resources:
      requests:
        cpu: "8"
`

// schedulerPoll runs kubectl until check accepts its output (bounded).
func schedulerPoll(t *testing.T, c *launch.Cluster, what string, timeout time.Duration, check func(string) bool, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := kubectlOn(t, c, "", "", args...)
		if err == nil && check(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last kubectl %s: %v\n%s", what, timeout, strings.Join(args, " "), err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSchedulerPendingThenBigNode: on a 3-master cluster with two 2-cpu
// hollow nodes, a pod asking for 8 cpu stays Pending and `kubectl describe`
// shows Kubernetes' FailedScheduling message; adding a 16-cpu node gets it
// bound at once, with a Scheduled event.
func TestSchedulerPendingThenBigNode(t *testing.T) {
	c := startAPICluster(t, 3)
	startHollowNodes(t, c, "small-2", "--count", "2", "--name-prefix", "small-", "--cpu", "2", "--memory", "4Gi")
	// Both nodes Ready before the pod: the message counts them.
	schedulerPoll(t, c, "two Ready nodes", 30*time.Second, func(out string) bool { return strings.Count(out, "True") == 2 },
		"get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)

	if out, err := kubectlOn(t, c, "", schedulerBigPod, "create", "-f", "-"); err != nil {
		t.Fatalf("create pod: %v\n%s", err, out)
	}
	want := "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
	out := schedulerPoll(t, c, "FailedScheduling in kubectl describe", 30*time.Second,
		func(out string) bool { return strings.Contains(out, "FailedScheduling") }, "describe", "pod", "big")
	if !strings.Contains(out, want) || !strings.Contains(out, "default-scheduler") || !strings.Contains(out, "Warning") {
		t.Errorf("kubectl describe pod big lacks the Warning FailedScheduling event from default-scheduler with %q:\n%s", want, out)
	}
	cond := schedulerPoll(t, c, "PodScheduled=False", 10*time.Second, func(out string) bool { return out != "" },
		"get", "pod", "big", "-o", `jsonpath={.status.conditions[?(@.type=="PodScheduled")].status}/{.status.conditions[?(@.type=="PodScheduled")].reason}`)
	if cond != "False/Unschedulable" {
		t.Errorf("PodScheduled condition %q, want False/Unschedulable", cond)
	}

	startHollowNodes(t, c, "big-1", "--count", "1", "--name-prefix", "big-", "--cpu", "16", "--memory", "32Gi")
	t0 := time.Now()
	schedulerPoll(t, c, "pod bound to the big node", 10*time.Second, func(out string) bool { return out == "big-1" },
		"get", "pod", "big", "-o", "jsonpath={.spec.nodeName}")
	t.Logf("bound %s after big-1 registered (as seen through kubectl polling)", time.Since(t0).Round(time.Millisecond))
	out = schedulerPoll(t, c, "Scheduled event", 10*time.Second,
		func(out string) bool { return strings.Contains(out, "Successfully assigned default/big to big-1") }, "describe", "pod", "big")
	if !strings.Contains(out, "Scheduled") {
		t.Errorf("no Scheduled event:\n%s", out)
	}
}
