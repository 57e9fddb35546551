package main

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestGarbageCollectionWithKubectl drives the namespace, garbage
// collector, serviceaccount, endpoint and endpointslice controllers as a
// user would: kubectl against three masters (controller-manager elected
// among them) with hollow nodes running the pods.
func TestGarbageCollectionWithKubectl(t *testing.T) {
	c := startAPICluster(t, 3)
	startHollowNodes(t, c, "gc-node-1", "--count", "2", "--name-prefix", "gc-node-")
	client := failoverClient(t, c)
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := kubectlOn(t, c, "", "", args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	// poll runs kubectl until check accepts its output.
	poll := func(what string, check func(string) bool, args ...string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := kubectlOn(t, c, "", "", args...)
			if err == nil && check(out) {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: kubectl %s: %v\n%s", what, strings.Join(args, " "), err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	empty := func(out string) bool { return strings.TrimSpace(out) == "" }
	rolledOut := func(ns, name string) {
		t.Helper()
		out := kubectl("-n", ns, "rollout", "status", "deployment/"+name, "--timeout=60s")
		if !strings.Contains(out, "successfully rolled out") {
			t.Fatalf("rollout status: %s", out)
		}
	}

	t.Run("default service account", func(t *testing.T) {
		kubectl("create", "ns", "gc-sa")
		start := time.Now()
		poll("default service account", func(out string) bool { return strings.TrimSpace(out) == "serviceaccount/default" },
			"-n", "gc-sa", "get", "sa", "default", "-o", "name")
		t.Logf("default service account after %v", time.Since(start))
	})

	t.Run("namespace deletion", func(t *testing.T) {
		kubectl("create", "ns", "gc-doomed")
		kubectl("-n", "gc-doomed", "create", "deployment", "web", "--image=busybox", "--replicas=3")
		kubectl("-n", "gc-doomed", "create", "configmap", "settings", "--from-literal=mode=x")
		kubectl("-n", "gc-doomed", "create", "secret", "generic", "token", "--from-literal=k=v")
		kubectl("-n", "gc-doomed", "expose", "deployment", "web", "--port=80", "--target-port=8080")
		rolledOut("gc-doomed", "web")
		// kubectl delete waits until the namespace is gone.
		start := time.Now()
		if out := kubectl("delete", "ns", "gc-doomed", "--timeout=60s"); !strings.Contains(out, `namespace "gc-doomed" deleted`) {
			t.Fatalf("delete ns: %s", out)
		}
		t.Logf("namespace with a deployment, pods, a service, a configmap and a secret deleted in %v", time.Since(start))
		if out, err := kubectlOn(t, c, "", "", "get", "ns", "gc-doomed"); err == nil || !strings.Contains(out, "NotFound") {
			t.Fatalf("namespace still there: %v %s", err, out)
		}
		ctx := context.Background()
		for what, n := range gcCountAll(t, ctx, client, "gc-doomed") {
			if n != 0 {
				t.Fatalf("%d %s left in the deleted namespace", n, what)
			}
		}
	})

	t.Run("delete deployment, background", func(t *testing.T) {
		kubectl("create", "deployment", "gc-bg", "--image=busybox", "--replicas=2")
		rolledOut("default", "gc-bg")
		kubectl("delete", "deployment", "gc-bg")
		poll("replicasets of the deleted deployment", empty, "get", "rs", "-l", "app=gc-bg", "-o", "name")
		poll("pods of the deleted deployment", empty, "get", "pods", "-l", "app=gc-bg", "-o", "name")
	})

	t.Run("delete deployment, orphan", func(t *testing.T) {
		kubectl("create", "deployment", "gc-orphan", "--image=busybox", "--replicas=2")
		rolledOut("default", "gc-orphan")
		kubectl("delete", "deployment", "gc-orphan", "--cascade=orphan")
		// The replicaset stays, without owner, and keeps its pods.
		poll("orphaned replicaset", func(out string) bool { return strings.TrimSpace(out) == "<none>" },
			"get", "rs", "-l", "app=gc-orphan", "-o", "custom-columns=OWNER:.metadata.ownerReferences[0].kind", "--no-headers")
		pods := kubectl("get", "pods", "-l", "app=gc-orphan", "-o", "name")
		if n := len(strings.Fields(pods)); n != 2 {
			t.Fatalf("pods of the orphaned replicaset: %q", pods)
		}
		kubectl("delete", "rs", "-l", "app=gc-orphan")
		poll("pods of the deleted replicaset", empty, "get", "pods", "-l", "app=gc-orphan", "-o", "name")
	})

	t.Run("delete deployment, foreground", func(t *testing.T) {
		kubectl("create", "deployment", "gc-fg", "--image=busybox", "--replicas=3")
		rolledOut("default", "gc-fg")
		// kubectl waits for the deployment to be gone; in foreground that
		// happens only after its replicaset and pods are.
		kubectl("delete", "deployment", "gc-fg", "--cascade=foreground", "--timeout=60s")
		if out := kubectl("get", "rs,pods", "-l", "app=gc-fg", "-o", "name"); !empty(out) {
			t.Fatalf("dependents outlived their foreground-deleted owner:\n%s", out)
		}
	})

	t.Run("endpoints and endpointslices", func(t *testing.T) {
		kubectl("create", "deployment", "gc-ep", "--image=busybox", "--replicas=3", "--port=8080")
		kubectl("expose", "deployment", "gc-ep", "--port=80", "--target-port=8080")
		rolledOut("default", "gc-ep")
		ips := func(n int) func(string) bool {
			return func(out string) bool { return len(strings.Fields(out)) == n }
		}
		poll("endpoints", ips(3), "get", "endpoints", "gc-ep", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
		poll("endpointslice", ips(3), "get", "endpointslices", "-l", "kubernetes.io/service-name=gc-ep",
			"-o", "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}")
		out := kubectl("get", "endpoints,endpointslices", "-l", "app=gc-ep")
		if !strings.Contains(out, "endpoints/gc-ep") || !strings.Contains(out, "endpointslice.discovery.k8s.io/gc-ep-") {
			t.Fatalf("kubectl get endpoints,endpointslices:\n%s", out)
		}
		t.Logf("kubectl get endpoints,endpointslices:\n%s", out)
		kubectl("scale", "deployment", "gc-ep", "--replicas=1")
		poll("endpoints after scale down", ips(1), "get", "endpoints", "gc-ep", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
		poll("endpointslice after scale down", ips(1), "get", "endpointslices", "-l", "kubernetes.io/service-name=gc-ep",
			"-o", "jsonpath={.items[*].endpoints[*].addresses[0]}")
		kubectl("delete", "service", "gc-ep")
		poll("endpoints of the deleted service", empty, "get", "endpoints", "-l", "app=gc-ep", "-o", "name")
		poll("endpointslices of the deleted service", empty, "get", "endpointslices", "-l", "kubernetes.io/service-name=gc-ep", "-o", "name")
	})
}

// gcCountAll counts what is left of the usual kinds in a namespace.
func gcCountAll(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string) map[string]int {
	t.Helper()
	out := map[string]int{}
	count := func(what string, n int, err error) {
		if err != nil {
			t.Fatalf("list %s: %v", what, err)
		}
		out[what] = n
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	count("pods", len(pods.Items), err)
	cms, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	count("configmaps", len(cms.Items), err)
	secrets, err := client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	count("secrets", len(secrets.Items), err)
	svcs, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	count("services", len(svcs.Items), err)
	eps, err := client.CoreV1().Endpoints(ns).List(ctx, metav1.ListOptions{})
	count("endpoints", len(eps.Items), err)
	slices, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
	count("endpointslices", len(slices.Items), err)
	deps, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	count("deployments", len(deps.Items), err)
	rss, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	count("replicasets", len(rss.Items), err)
	sas, err := client.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
	count("serviceaccounts", len(sas.Items), err)
	return out
}
