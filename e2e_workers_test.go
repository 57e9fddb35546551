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

// TestUpWithWorkers runs what the README's first command runs with workers:
// `synod up --masters 3 --workers 2`. Both workers register Ready with a
// podCIDR, gossip shows 5 alive members, a deployment's pods run on
// containerd on both workers, and a NodePort service reaches pods on both
// through its ClusterIP and through each worker's node port. Ctrl-C removes every namespace, link and
// process it made.
func TestUpWithWorkers(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (network namespaces, containerd)")
		}
		t.Skip("needs root")
	}
	for _, tool := range []string{"kubectl", "containerd", "runc", "ip", "nsenter", "curl"} {
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

	// synod up imported the busybox test image into every worker.
	if out, err := kubectl("create", "deployment", "web", "--image=busybox:synod-test", "--replicas=4", "--",
		"sh", "-c", "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"); err != nil {
		t.Fatalf("create deployment: %v %s", err, out)
	}
	if out, err := kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080", "--type=NodePort"); err != nil {
		t.Fatalf("expose: %v %s", err, out)
	}
	poll("4 web pods Running on both workers", 60*time.Second, func() (bool, string) {
		out, _ := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName}={.status.phase} {end}")
		return strings.Count(out, "=Running") == 4 && strings.Contains(out, "w1=") && strings.Contains(out, "w2="), out
	})
	ip, err := kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(ip)
	}
	// Through the ClusterIP from w1's namespace, answers must come from
	// pods on both workers (host-gw routes and the proxy's rules).
	seen := map[string]bool{}
	pods, _ := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName} {end}")
	nodeOf := map[string]string{}
	for _, f := range strings.Fields(pods) {
		name, node, _ := strings.Cut(f, "=")
		nodeOf[name] = node
	}
	poll("service answers from pods on both workers", 30*time.Second, func() (bool, string) {
		out, err := exec.Command("ip", "netns", "exec", "synodup-w1", "curl", "-s", "-m", "2", fmt.Sprintf("http://%s/", ip)).CombinedOutput()
		if err == nil {
			seen[nodeOf[strings.TrimSpace(string(out))]] = true
		}
		return seen["w1"] && seen["w2"], fmt.Sprintf("%v %s", seen, out)
	})

	// NodePort: on each worker's address, from the other worker's namespace.
	nodePort, err := kubectl("get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}")
	if err != nil || nodePort == "" {
		t.Fatalf("nodePort: %v %s", err, nodePort)
	}
	for _, tc := range []struct{ from, to string }{{"synodup-w1", "10.99.0.12"}, {"synodup-w2", "10.99.0.11"}} {
		poll("NodePort "+tc.to+":"+nodePort+" from "+tc.from, 20*time.Second, func() (bool, string) {
			out, err := exec.Command("ip", "netns", "exec", tc.from, "curl", "-s", "-m", "2", fmt.Sprintf("http://%s:%s/", tc.to, nodePort)).CombinedOutput()
			_, known := nodeOf[strings.TrimSpace(string(out))]
			return err == nil && known, string(out)
		})
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
		if err != nil || !strings.Contains(out, "www") {
			t.Errorf("kubectl exec %s -- ls /: %v %s", name, err, out)
		}
		break
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
