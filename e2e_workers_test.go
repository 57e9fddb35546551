package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpWithWorkers is issue 5's walkthrough through `synod up --masters 3
// --workers 2`: both workers register Ready with a podCIDR and gossip shows 5
// alive members; `kubectl create deployment web ... -- httpd -f -p 80` runs 4
// pods with pod IPs on both workers; after `kubectl expose --type NodePort`,
// wget from each worker's namespace to the ClusterIP and to both node ports
// gets pages from pods on both workers; kubectl logs and exec work; a failing
// liveness probe restarts its container; an unknown image, a crashing
// command, a probe on a closed port and a missing ConfigMap each show
// Kubernetes' reason in get/describe while the service keeps answering.
// Ctrl-C removes every namespace, link and process it made.
func TestUpWithWorkers(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (network namespaces, containerd)")
		}
		t.Skip("needs root")
	}
	for _, tool := range []string{"kubectl", "containerd", "runc", "ip", "nsenter", "wget"} {
		requireTool(t, tool)
	}
	dir := t.TempDir()
	cl := filepath.Join(dir, "c")
	up := exec.Command(synodBinary, "up", "--masters", "3", "--workers", "2", "--dir", cl)
	var upOut bytes.Buffer
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	upDone := make(chan error, 1)
	go func() { upDone <- up.Wait() }()
	stopped := false
	stopUp := func() {
		if stopped {
			return
		}
		stopped = true
		syscall.Kill(up.Process.Pid, syscall.SIGINT)
		select {
		case <-upDone:
		case <-time.After(60 * time.Second):
			syscall.Kill(up.Process.Pid, syscall.SIGKILL)
			<-upDone
			t.Errorf("synod up did not stop within 60s of SIGINT")
		}
	}
	t.Cleanup(func() {
		stopUp()
		if t.Failed() {
			t.Logf("synod up output:\n%s", upOut.String())
		}
	})
	kc := filepath.Join(cl, "kubeconfig")
	kubectl := func(args ...string) (string, error) {
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kc, "--request-timeout=10s"}, args...)...).CombinedOutput()
		return string(out), err
	}
	poll := func(what string, timeout time.Duration, f func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			ok, last := f()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	poll("2 Ready workers with podCIDRs", 90*time.Second, func() (bool, string) {
		out, err := kubectl("get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}")
		if err != nil {
			return false, out
		}
		lines := strings.Fields(strings.ReplaceAll(out, "\n", " | "))
		return strings.Count(out, " True") == 2 && strings.Count(out, "10.244.") == 2, strings.Join(lines, " ")
	})
	var state struct {
		Masters []struct {
			Gossip string `json:"gossip"`
		} `json:"masters"`
	}
	data, err := os.ReadFile(filepath.Join(cl, "cluster.json"))
	if err != nil || json.Unmarshal(data, &state) != nil || len(state.Masters) == 0 || state.Masters[0].Gossip == "" {
		t.Fatalf("cluster.json: %v %s", err, data)
	}
	poll("synod members: 5 alive", 30*time.Second, func() (bool, string) {
		out, _ := exec.Command(synodBinary, "members", "--gossip-addr", state.Masters[0].Gossip).CombinedOutput()
		return strings.Count(string(out), " alive") == 5, string(out)
	})

	// synod up imported the busybox test image into every worker; its
	// httpd serves the pod's hostname from its working directory.
	if out, err := kubectl("create", "deployment", "web", "--image=busybox:synod-test", "--replicas=4", "--",
		"httpd", "-f", "-p", "80"); err != nil {
		t.Fatalf("create deployment: %v %s", err, out)
	}
	if out, err := kubectl("expose", "deployment", "web", "--port", "80", "--type", "NodePort"); err != nil {
		t.Fatalf("expose: %v %s", err, out)
	}
	poll("4 web pods Running with pod IPs on both workers", 60*time.Second, func() (bool, string) {
		out, _ := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName}={.status.phase}={.status.podIP} {end}")
		return strings.Count(out, "=Running=10.244.") == 4 && strings.Contains(out, "w1=") && strings.Contains(out, "w2="), out
	})
	ip, err := kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(ip)
	}
	nodePort, err := kubectl("get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}")
	if err != nil || nodePort == "" {
		t.Fatalf("nodePort: %v %s", err, nodePort)
	}
	pods, _ := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName} {end}")
	nodeOf := map[string]string{}
	for _, f := range strings.Fields(pods) {
		name, node, _ := strings.Cut(f, "=")
		nodeOf[name] = node
	}
	// wget from each worker's namespace, to the ClusterIP and to each
	// worker's node port: every target answers with pages from pods on
	// both workers (host-gw routes plus the proxy's random spreading).
	wget := func(ns, url string) (string, error) {
		out, err := exec.Command("ip", "netns", "exec", ns, "wget", "-qO-", "-T", "2", "-t", "1", url).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, from := range []string{"synodup-w1", "synodup-w2"} {
		for _, url := range []string{"http://" + ip + "/", "http://10.99.0.11:" + nodePort + "/", "http://10.99.0.12:" + nodePort + "/"} {
			seen := map[string]bool{}
			poll("wget "+url+" from "+from+" reaches pods on both workers", 30*time.Second, func() (bool, string) {
				page, err := wget(from, url)
				if err != nil {
					return false, fmt.Sprintf("%v %s", err, page)
				}
				node, known := nodeOf[page]
				if !known {
					return false, "page from no web pod: " + page
				}
				seen[node] = true
				return seen["w1"] && seen["w2"], fmt.Sprint(seen)
			})
		}
	}

	// kubectl logs and exec, through the apiserver to the kubelets.
	if out, err := kubectl("run", "talker", "--image=busybox:synod-test", "--restart=Never", "--",
		"sh", "-c", "echo hello-from-logs; exec sleep 3600"); err != nil {
		t.Fatalf("run talker: %v %s", err, out)
	}
	poll("kubectl logs talker", 30*time.Second, func() (bool, string) {
		out, err := kubectl("logs", "talker")
		return err == nil && strings.Contains(out, "hello-from-logs"), out
	})
	for name := range nodeOf {
		out, err := kubectl("exec", name, "--", "ls", "/")
		if err != nil || !strings.Contains(out, "proc") || !strings.Contains(out, "var") {
			t.Errorf("kubectl exec %s -- ls /: %v %s", name, err, out)
		}
		break
	}

	// A failing liveness probe restarts its container: RESTARTS rises.
	// Bad input shows Kubernetes' reasons, and the workers keep serving.
	badPods := `
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  containers:
  - name: c
    image: busybox:synod-test
    command: [sh, -c, "touch /tmp/healthy; sleep 4; rm /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: noimage}
spec:
  containers: [{name: c, image: "no-such-registry.invalid/nothing:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers: [{name: c, image: busybox:synod-test, command: [sh, -c, "echo about to fail; exit 3"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: closedport}
spec:
  containers:
  - name: c
    image: busybox:synod-test
    command: [sleep, "3600"]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: nocm}
spec:
  containers:
  - name: c
    image: busybox:synod-test
    command: [sleep, "3600"]
    envFrom: [{configMapRef: {name: missing-config}}]
`
	apply := exec.Command("kubectl", "--kubeconfig", kc, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(badPods)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v %s", err, out)
	}
	getPods := func() string {
		out, _ := kubectl("get", "pods", "unhealthy", "noimage", "crasher", "closedport", "nocm", "--no-headers")
		return out
	}
	// `kubectl get pods` columns: NAME READY STATUS RESTARTS AGE.
	column := func(out, pod string, i int) string {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > i && f[0] == pod {
				return f[i]
			}
		}
		return ""
	}
	restarts := func(out, pod string) int {
		n := 0
		fmt.Sscanf(column(out, pod, 3), "%d", &n)
		return n
	}
	poll("kubectl get pods shows each bad pod's reason", 90*time.Second, func() (bool, string) {
		out := getPods()
		ok := restarts(out, "unhealthy") >= 1 &&
			(column(out, "noimage", 2) == "ErrImagePull" || column(out, "noimage", 2) == "ImagePullBackOff") &&
			column(out, "crasher", 2) == "CrashLoopBackOff" && restarts(out, "crasher") >= 1 &&
			column(out, "closedport", 1) == "0/1" && column(out, "closedport", 2) == "Running" &&
			column(out, "nocm", 2) == "CreateContainerConfigError"
		return ok, out
	})
	describe := func(pod string, want ...string) {
		t.Helper()
		poll("kubectl describe pod "+pod, 30*time.Second, func() (bool, string) {
			out, _ := kubectl("describe", "pod", pod)
			for _, w := range want {
				if !strings.Contains(out, w) {
					return false, "missing " + w + " in:\n" + out
				}
			}
			return true, ""
		})
	}
	describe("unhealthy", "Liveness probe failed", "Killing")
	describe("noimage", "Failed to pull image", "ImagePullBackOff")
	describe("crasher", "Back-off restarting failed container", "Exit Code:    3")
	describe("closedport", "Readiness probe failed", "connection refused")
	describe("nocm", `configmap "missing-config" not found`)
	// Backoff: the crasher is restarted at 10s, 20s, ... not in a loop.
	if out := getPods(); restarts(out, "crasher") > 4 {
		t.Errorf("crasher restarted too often for Kubernetes' backoff:\n%s", out)
	}
	for _, from := range []string{"synodup-w1", "synodup-w2"} {
		if page, err := wget(from, "http://"+ip+"/"); err != nil || nodeOf[page] == "" {
			t.Errorf("the web service stopped answering from %s next to the bad pods: %v %q", from, err, page)
		}
	}

	stopUp()
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "synodup-w") {
		t.Errorf("worker namespaces left after stop:\n%s", out)
	}
	if exec.Command("ip", "link", "show", "synodup0").Run() == nil {
		t.Error("host bridge synodup0 left after stop")
	}
	if out, _ := exec.Command("pgrep", "-f", cl).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes of the cluster left after stop: %s", out)
	}
}
