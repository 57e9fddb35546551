package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"

	"synod/internal/launch"
)

// Issue 4, done-when 3: stop heartbeating a node; after the grace period it
// is NotReady/Unknown and tainted, and its deployment's pods are recreated
// on the other node after their tolerationSeconds. Everything runs in the
// masters (scheduler and controller-manager under leader election); the
// test drives it with kubectl and two `synod hollow-nodes` processes.
func TestNodeLifecycleE2E(t *testing.T) {
	const grace = 3 * time.Second
	c := nodelifecycleStartCluster(t, "--node-monitor-grace-period", grace.String(), "--node-monitor-period", "500ms")
	workers := map[string]*nodelifecycleHollow{
		"worker-1": nodelifecycleStartHollow(t, c, "worker-1"),
		"worker-2": nodelifecycleStartHollow(t, c, "worker-2"),
	}
	if out, err := kubectlOn(t, c, "", nodelifecycleManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	nodelifecyclePoll(t, 30*time.Second, "deployment web available", func() (bool, string) {
		out, err := kubectlOn(t, c, "", "", "get", "deployment", "web", "-o", "json")
		var d appsv1.Deployment
		if err != nil || json.Unmarshal([]byte(out), &d) != nil {
			return false, out
		}
		return d.Status.AvailableReplicas == 4 && d.Status.UpdatedReplicas == 4, out
	})

	// Kill the hollow kubelet of the node running most web pods.
	byNode := map[string]int{}
	for _, p := range nodelifecyclePods(t, c) {
		byNode[p.Spec.NodeName]++
	}
	victim, survivor := "worker-1", "worker-2"
	if byNode["worker-2"] > byNode["worker-1"] {
		victim, survivor = survivor, victim
	}
	t.Logf("web pods by node: %v; killing %s", byNode, victim)
	workers[victim].kill()
	killed := time.Now()

	// After the grace period (not before) kubectl shows it NotReady.
	nodelifecyclePoll(t, grace+15*time.Second, victim+" NotReady", func() (bool, string) {
		st := nodelifecycleNodeStatus(t, c, victim)
		return st == "NotReady", st
	})
	if d := time.Since(killed); d < grace-time.Second {
		t.Errorf("%s NotReady %s after its kubelet died, sooner than the %s grace period allows", victim, d, grace)
	}
	t.Logf("%s NotReady %s after its kubelet died", victim, time.Since(killed).Round(100*time.Millisecond))
	var node v1.Node
	nodelifecyclePoll(t, 10*time.Second, victim+" tainted unreachable", func() (bool, string) {
		out, err := kubectlOn(t, c, "", "", "get", "node", victim, "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &node) != nil {
			return false, out
		}
		return nodelifecycleTaint(&node, v1.TaintEffectNoExecute) != nil, out
	})
	for _, cond := range node.Status.Conditions {
		if cond.Type == v1.NodeReady && (cond.Status != v1.ConditionUnknown || cond.Reason != "NodeStatusUnknown") {
			t.Errorf("Ready condition %+v, want Unknown/NodeStatusUnknown", cond)
		}
	}
	taint := nodelifecycleTaint(&node, v1.TaintEffectNoExecute)
	if taint.TimeAdded == nil {
		t.Fatalf("unreachable taint without timeAdded: %+v", taint)
	}

	// The pods there are evicted after tolerationSeconds (2) and the
	// deployment brings them back on the survivor.
	nodelifecyclePoll(t, 30*time.Second, "all web pods running on "+survivor, func() (bool, string) {
		running := 0
		for _, p := range nodelifecyclePods(t, c) {
			if p.DeletionTimestamp == nil && p.Spec.NodeName == survivor && p.Status.Phase == v1.PodRunning {
				running++
			}
		}
		return running == 4, ""
	})
	t.Logf("web back to 4 pods on %s %s after the kill", survivor, time.Since(killed).Round(100*time.Millisecond))
	for _, p := range nodelifecyclePods(t, c) {
		if p.Spec.NodeName != victim {
			continue
		}
		// Nobody confirms deletes on a dead node: they stay Terminating.
		if p.DeletionTimestamp == nil {
			t.Errorf("pod %s on dead %s was not evicted", p.Name, victim)
		} else if p.DeletionTimestamp.Sub(taint.TimeAdded.Time) < 2*time.Second {
			t.Errorf("pod %s evicted at %s, sooner than tolerationSeconds 2 after the taint (%s)", p.Name, p.DeletionTimestamp, taint.TimeAdded)
		}
	}
	out, err := kubectlOn(t, c, "", "", "get", "events", "-A", "--field-selector", "reason=NodeNotReady,involvedObject.name="+victim, "-o", "json")
	if err != nil || !strings.Contains(out, "Node "+victim+" status is now: NodeNotReady") {
		t.Errorf("no NodeNotReady event for %s: %v %s", victim, err, out)
	}
	out, err = kubectlOn(t, c, "", "", "get", "events", "--field-selector", "reason=TaintManagerEviction", "-o", "json")
	if err != nil || !strings.Contains(out, "Marking for deletion Pod default/web-") {
		t.Errorf("no TaintManagerEviction events: %v %s", err, out)
	}
}

// nodelifecycleManifest: the pods leave a dead node 2s after it is
// tainted (admission would give them 300s).
const nodelifecycleManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - name: web
        image: local/busybox:1
`

// nodelifecycleStartCluster is startAPICluster with extra master flags, for
// three masters running every component.
func nodelifecycleStartCluster(t *testing.T, extra ...string) *launch.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := launch.Start(ctx, launch.Options{Binary: synodBinary, Masters: 3, Dir: t.TempDir(), API: true,
		ExtraArgs: extra, StopTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("start 3 masters: %v", err)
	}
	t.Cleanup(func() { c.Stop() })
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Masters() {
		for {
			out, err := kubectlOn(t, c, m.APIURL, "", "get", "ns", "kube-node-lease", "-o", "name")
			if err == nil && strings.TrimSpace(out) == "namespace/kube-node-lease" {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("API on %s not ready: %v %s", m.APIURL, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// nodelifecycleHollow is one `synod hollow-nodes` process running one node.
type nodelifecycleHollow struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// nodelifecycleStartHollow runs `synod hollow-nodes` for one node and
// waits until kubectl shows the node Ready. hollow.Start gives up when its
// first status write loses a race (nodeipam patches a podCIDR into every
// new node at the same moment); the node then exists without status, so a
// process that exits early is started again and takes the node over.
func nodelifecycleStartHollow(t *testing.T, c *launch.Cluster, node string) *nodelifecycleHollow {
	t.Helper()
	args := []string{"hollow-nodes", "--kubeconfig", c.KubeconfigPath(), "--count", "1", "--exact-name",
		"--name-prefix", node, "--lease-renew-interval", "500ms"}
	for _, m := range c.Masters() {
		args = append(args, "--server", m.APIURL)
	}
	logPath := filepath.Join(c.Dir(), "hollow-"+node+".log")
	t.Cleanup(func() {
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("synod hollow-nodes %s:\n%s", node, data[max(0, len(data)-4000):])
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(synodBinary, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatal(err)
		}
		h := &nodelifecycleHollow{cmd: cmd, done: make(chan struct{})}
		go func() {
			cmd.Wait()
			logf.Close()
			close(h.done)
		}()
		t.Cleanup(h.kill)
		for {
			if nodelifecycleNodeStatus(t, c, node) == "Ready" {
				return h
			}
			select {
			case <-h.done:
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s never became Ready", node)
			}
			if h.exited() {
				break
			}
		}
		t.Logf("synod hollow-nodes for %s exited before its node was Ready (attempt %d); starting it again", node, attempt)
	}
}

func (h *nodelifecycleHollow) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process by its pid (a machine dying says nothing) and
// waits for it.
func (h *nodelifecycleHollow) kill() {
	select {
	case <-h.done:
		return
	default:
	}
	syscall.Kill(h.cmd.Process.Pid, syscall.SIGKILL)
	<-h.done
}

func nodelifecyclePods(t *testing.T, c *launch.Cluster) []v1.Pod {
	t.Helper()
	out, err := kubectlOn(t, c, "", "", "get", "pods", "-l", "app=web", "-o", "json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var list v1.PodList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// nodelifecycleNodeStatus is the STATUS column of `kubectl get node`.
func nodelifecycleNodeStatus(t *testing.T, c *launch.Cluster, node string) string {
	t.Helper()
	out, err := kubectlOn(t, c, "", "", "get", "node", node, "--no-headers")
	if f := strings.Fields(out); err == nil && len(f) > 1 {
		return f[1]
	}
	return out
}

func nodelifecycleTaint(n *v1.Node, effect v1.TaintEffect) *v1.Taint {
	for i := range n.Spec.Taints {
		if n.Spec.Taints[i].Key == v1.TaintNodeUnreachable && n.Spec.Taints[i].Effect == effect {
			return &n.Spec.Taints[i]
		}
	}
	return nil
}

// nodelifecyclePoll retries f every 200ms until it holds or timeout passes.
func nodelifecyclePoll(t *testing.T, timeout time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The daemonset and job controllers with the real scheduler, through
// kubectl: a daemon pod lands on every node (placed by its metadata.name
// affinity), and a job runs its completions to Complete.
func TestNodeLifecycleDaemonSetAndJobE2E(t *testing.T) {
	c := nodelifecycleStartCluster(t)
	nodelifecycleStartHollow(t, c, "worker-1")
	nodelifecycleStartHollow(t, c, "worker-2")
	if out, err := kubectlOn(t, c, "", nodelifecycleWorkloads, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	nodelifecyclePoll(t, 30*time.Second, "a ready agent pod on each node", func() (bool, string) {
		out, err := kubectlOn(t, c, "", "", "get", "daemonset", "agent", "-o", "json")
		var ds appsv1.DaemonSet
		if err != nil || json.Unmarshal([]byte(out), &ds) != nil {
			return false, out
		}
		s := ds.Status
		return s.DesiredNumberScheduled == 2 && s.NumberReady == 2 && s.UpdatedNumberScheduled == 2, out
	})
	out, err := kubectlOn(t, c, "", "", "get", "pods", "-l", "app=agent", "-o", "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}")
	if err != nil || !strings.Contains(out, "worker-1") || !strings.Contains(out, "worker-2") {
		t.Fatalf("agent pods on %q (%v)", out, err)
	}
	if out, err := kubectlOn(t, c, "", "", "wait", "--for=condition=complete", "job/count", "--timeout=30s"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	out, err = kubectlOn(t, c, "", "", "get", "job", "count", "-o", "jsonpath={.status.succeeded}/{.status.failed}")
	if err != nil || out != "3/" && out != "3/0" {
		t.Fatalf("job count: %q %v", out, err)
	}
	out, err = kubectlOn(t, c, "", "", "get", "events", "--field-selector", "involvedObject.name=count,reason=Completed", "-o", "name")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Errorf("no Completed event for job count: %v %s", err, out)
	}
}

const nodelifecycleWorkloads = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: local/agent:1
---
apiVersion: batch/v1
kind: Job
metadata:
  name: count
spec:
  completions: 3
  parallelism: 2
  template:
    metadata:
      annotations: {hollow.synod.io/run-for: 300ms}
    spec:
      restartPolicy: Never
      containers:
      - name: count
        image: local/busybox:1
`
