package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"synod/internal/launch"
)

// startAPICluster starts masters with the Kubernetes API and waits until
// kubectl can list namespaces through every one of them.
func startAPICluster(t *testing.T, masters int) *launch.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := launch.Start(ctx, launch.Options{Binary: synodBinary, Masters: masters, Dir: t.TempDir(), API: true, StopTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("start %d masters: %v", masters, err)
	}
	t.Cleanup(func() { c.Stop() })
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Masters() {
		for {
			out, err := kubectlOn(t, c, m.APIURL, "", "get", "ns", "kube-system", "-o", "name")
			if err == nil && strings.TrimSpace(out) == "namespace/kube-system" {
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

// kubectlOn runs the preinstalled kubectl with the cluster's admin
// kubeconfig, against server (if given), and returns stdout.
func kubectlOn(t *testing.T, c *launch.Cluster, server, stdin string, args ...string) (string, error) {
	t.Helper()
	bin := requireTool(t, "kubectl")
	full := append([]string{"--kubeconfig", c.KubeconfigPath(), "--request-timeout=20s"}, args...)
	if server != "" {
		full = append([]string{"--server", server}, full...)
	}
	cmd := exec.Command(bin, full...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+filepath.Join(c.Dir(), "kubecache"))
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

const kubectlManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: local/busybox:1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: "VALUE"
`

func TestKubectlAgainstEveryMaster(t *testing.T) {
	c := startAPICluster(t, 3)
	ms := c.Masters()
	k := func(server string, args ...string) string {
		t.Helper()
		out, err := kubectlOn(t, c, server, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	m0, m1, m2 := ms[0].APIURL, ms[1].APIURL, ms[2].APIURL

	if out := k(m1, "get", "ns"); !strings.Contains(out, "NAME") || !strings.Contains(out, "STATUS") || strings.Count(out, "Active") != 4 {
		t.Fatalf("get ns:\n%s", out)
	}
	if out := k(m2, "get", "pods", "-n", "kube-system"); out != "" {
		t.Fatalf("get pods -n kube-system printed %q to stdout", out)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "app.yaml")
	os.WriteFile(file, []byte(kubectlManifest), 0o644)
	if out := k(m0, "create", "-f", file); !strings.Contains(out, "deployment.apps/web created") || !strings.Contains(out, "configmap/settings created") {
		t.Fatalf("create -f:\n%s", out)
	}
	k(m1, "apply", "-f", file)
	if out := k(m2, "apply", "-f", file); strings.Count(out, "unchanged") != 3 {
		t.Fatalf("second apply should change nothing:\n%s", out)
	}
	os.WriteFile(file, []byte(strings.Replace(kubectlManifest, `"VALUE"`, `"CHANGED"`, 1)), 0o644)
	if out := k(m0, "apply", "-f", file); !strings.Contains(out, "configmap/settings configured") {
		t.Fatalf("apply with a change:\n%s", out)
	}
	if out := k(m1, "get", "cm", "settings", "-o", "jsonpath={.data.mode}"); out != "CHANGED" {
		t.Fatalf("applied value = %q", out)
	}
	wide := k(m2, "get", "deploy,rs,po,svc", "-o", "wide")
	for _, want := range []string{"UP-TO-DATE", "AVAILABLE", "CONTAINERS", "deployment.apps/web", "service/web", "CLUSTER-IP", "80/TCP"} {
		if !strings.Contains(wide, want) {
			t.Fatalf("get -o wide lacks %q:\n%s", want, wide)
		}
	}
	var svc struct {
		Spec struct{ ClusterIP string } `json:"spec"`
	}
	if err := json.Unmarshal([]byte(k(m0, "get", "svc", "web", "-o", "json")), &svc); err != nil || !strings.HasPrefix(svc.Spec.ClusterIP, "10.") {
		t.Fatalf("service cluster IP %q (%v)", svc.Spec.ClusterIP, err)
	}
	if out := k(m1, "get", "deploy", "web", "-o", "yaml"); !strings.Contains(out, "kind: Deployment") || !strings.Contains(out, "replicas: 2") {
		t.Fatalf("-o yaml:\n%s", out)
	}

	// Pods, sorted custom columns, and a watch that sees a change made through another master.
	for _, n := range []string{"p2", "p1"} {
		k(m0, "run", n, "--image=local/busybox:1", "--restart=Never")
	}
	if out := k(m1, "get", "pods", "-o", "custom-columns=POD:metadata.name,NODE:spec.nodeName", "--sort-by", "metadata.name"); !strings.Contains(out, "POD") || strings.Index(out, "p1") > strings.Index(out, "p2") {
		t.Fatalf("custom-columns sorted:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, requireTool(t, "kubectl"), "--kubeconfig", c.KubeconfigPath(), "--server", m2, "get", "pods", "--watch", "--output-watch-events")
	seen := startUntil(t, watch, "MODIFIED")
	// Label through m0 until the watch on m2 reports it (it may not have
	// started watching when the first label lands).
	var got string
	for i := 0; got == ""; i++ {
		k(m0, "label", "pod", "p1", fmt.Sprintf("round=%d", i), "--overwrite")
		select {
		case got = <-seen:
		case <-time.After(time.Second):
		case <-ctx.Done():
			t.Fatal("kubectl get pods --watch never showed a change made through another master")
		}
	}
	watch.Process.Kill()
	watch.Wait()
	if !strings.Contains(got, "MODIFIED") || !strings.Contains(got, "p1") {
		t.Fatalf("watch output:\n%s", got)
	}

	// describe shows the pod's events.
	event := fmt.Sprintf(`{"apiVersion":"v1","kind":"Event","metadata":{"name":"p1.1","namespace":"default"},"involvedObject":{"kind":"Pod","name":"p1","namespace":"default","uid":%q},"reason":"Testing","message":"hello from the test","type":"Normal","firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:00:00Z","count":1,"source":{"component":"e2e"}}`,
		strings.TrimSpace(k(m0, "get", "pod", "p1", "-o", "jsonpath={.metadata.uid}")))
	if _, err := kubectlOn(t, c, m1, event, "create", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if out := k(m2, "describe", "pod", "p1"); !strings.Contains(out, "hello from the test") || !strings.Contains(out, "Testing") {
		t.Fatalf("describe pod lacks its event:\n%s", out)
	}

	// label, annotate, edit, scale, delete.
	k(m0, "label", "cm", "settings", "tier=web")
	k(m1, "annotate", "cm", "settings", "owner=e2e")
	editor := filepath.Join(dir, "editor.sh")
	os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/CHANGED/EDITED/' \"$1\"\n"), 0o755)
	edit := exec.Command(requireTool(t, "kubectl"), "--kubeconfig", c.KubeconfigPath(), "--server", m2, "edit", "cm", "settings")
	edit.Env = append(os.Environ(), "EDITOR="+editor, "KUBE_EDITOR="+editor)
	if out, err := edit.CombinedOutput(); err != nil {
		t.Fatalf("kubectl edit: %v\n%s", err, out)
	}
	if out := k(m0, "get", "cm", "settings", "-o", "jsonpath={.data.mode} {.metadata.labels.tier} {.metadata.annotations.owner}"); out != "EDITED web e2e" {
		t.Fatalf("after label/annotate/edit: %q", out)
	}
	k(m1, "scale", "deployment", "web", "--replicas=4")
	if out := k(m2, "get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.generation}"); out != "4 2" {
		t.Fatalf("after scale: replicas and generation %q, want \"4 2\"", out)
	}
	if out := k(m0, "delete", "-f", file); strings.Count(out, "deleted") != 3 {
		t.Fatalf("delete -f:\n%s", out)
	}
	if _, err := kubectlOn(t, c, m1, "", "get", "cm", "settings"); err == nil {
		t.Fatal("configmap still there after kubectl delete returned")
	}
	if out := k(m2, "get", "lease", "-n", "kube-system", "-o", "yaml"); !strings.Contains(out, "kind: List") {
		t.Fatalf("get lease -o yaml:\n%s", out)
	}
	if out := k(m0, "api-resources"); !strings.Contains(out, "deployments") || !strings.Contains(out, "deploy") || !strings.Contains(out, "leases") {
		t.Fatalf("api-resources:\n%s", out)
	}
	if out := k(m1, "auth", "can-i", "delete", "nodes"); strings.TrimSpace(out) != "yes" {
		t.Fatalf("auth can-i for admin: %q", out)
	}
	// A typo in a manifest is refused (kubectl asks for strict field validation).
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndataa:\n  a: \"1\"\n"), 0o644)
	if out, err := kubectlOn(t, c, m2, "", "create", "-f", typo); err == nil || !strings.Contains(out, `unknown field "dataa"`) {
		t.Fatalf("create with an unknown field: %v\n%s", err, out)
	}
	// synod kubeconfig makes credentials for another user; RBAC holds them back.
	bobCfg, code := runSynod(t, "kubeconfig", "--cluster-file", c.Dir(), "--user", "bob", "--group", "dev")
	if code != 0 {
		t.Fatalf("synod kubeconfig: exit %d: %s", code, bobCfg)
	}
	bobFile := filepath.Join(dir, "bob.kubeconfig")
	os.WriteFile(bobFile, []byte(bobCfg), 0o600)
	bob := exec.Command(requireTool(t, "kubectl"), "--kubeconfig", bobFile, "get", "pods")
	if out, err := bob.CombinedOutput(); err == nil || !strings.Contains(string(out), `User "bob" cannot list resource "pods" in API group "" in the namespace "default"`) {
		t.Fatalf("bob without a binding: %v\n%s", err, out)
	}
	if out, _ := exec.Command(requireTool(t, "kubectl"), "--kubeconfig", bobFile, "auth", "can-i", "list", "pods").CombinedOutput(); strings.TrimSpace(string(out)) != "no" {
		t.Fatalf("auth can-i for bob: %q", out)
	}
}
