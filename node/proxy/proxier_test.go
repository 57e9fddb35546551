package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"synod/internal/testcluster"
)

// started is a proxier running against the test cluster, programming a
// namespace the test made.
type started struct {
	runner *countingRunner
	reg    *prometheus.Registry
	netns  string // name
	path   string
	stop   func() // stops the proxier; idempotent
}

func startProxier(t *testing.T, c *testcluster.Cluster, clusterCIDR string) *started {
	t.Helper()
	name, path := newNetNS(t)
	return startProxierIn(t, c, name, path, Config{ClusterCIDR: clusterCIDR})
}

// startProxierIn starts a proxier with cfg (client, node name, runner,
// logger and registry filled in) on an existing namespace.
func startProxierIn(t *testing.T, c *testcluster.Cluster, name, path string, cfg Config) *started {
	t.Helper()
	s := &started{runner: newRunner(t, path), reg: prometheus.NewRegistry(), netns: name, path: path}
	cfg.Client, cfg.NodeName, cfg.IPTables, cfg.Registerer = c.Client, "node-a", s.runner, s.reg
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(s.stop)
	eventually(t, 10*time.Second, "first sync", func() bool { return syncs(t, s.reg) > 0 })
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func createNamespace(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	if _, err := client.CoreV1().Namespaces().Create(context.Background(),
		&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createService(t *testing.T, client kubernetes.Interface, svc *v1.Service) *v1.Service {
	t.Helper()
	out, err := client.CoreV1().Services(svc.Namespace).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// endpointSlice is what the endpointslice controller would write for
// ready endpoints ips of service svc on port 8080 ("http").
func endpointSlice(svc *v1.Service, ips ...string) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-1",
			Labels: map[string]string{discovery.LabelServiceName: svc.Name}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{ip}, NodeName: ptr.To("node-a"),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
	}
	return s
}

func webService(ns, name string, typ v1.ServiceType) *v1.Service {
	return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.ServiceSpec{
		Type: typ, Selector: map[string]string{"app": name},
		Ports: []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}}
}

// sepRules returns the KUBE-SVC chain's jumps of a service port, in order.
func svcJumps(nat, svcChainName string) []string {
	var out []string
	for _, l := range strings.Split(nat, "\n") {
		if strings.HasPrefix(l, "-A "+svcChainName+" ") && strings.Contains(l, "-j KUBE-SEP-") {
			out = append(out, l)
		}
	}
	return out
}

func TestProxier(t *testing.T) {
	requireNetNS(t)
	c := testcluster.Start(t, testcluster.Options{})
	t.Run("ClusterIP", func(t *testing.T) { testClusterIP(t, c) })
	t.Run("NodePort", func(t *testing.T) { testNodePort(t, c) })
	t.Run("Traffic", func(t *testing.T) { testTraffic(t, c) })
	t.Run("Restart", func(t *testing.T) { testRestart(t, c) })
	t.Run("RepairJumps", func(t *testing.T) { testRepairJumps(t, c) })
	t.Run("Cleanup", func(t *testing.T) { testCleanup(t, c) })
}

// testClusterIP follows one service through its life: three endpoints
// spread 1/3, 1/2, rest; one turning not ready and one removed show up
// within a second; deleting the service deletes its chains; every sync is
// one iptables-restore.
func testClusterIP(t *testing.T, c *testcluster.Cluster) {
	ctx := context.Background()
	s := startProxier(t, c, "10.244.0.0/16")
	createNamespace(t, c.Client, "cip")
	svc := createService(t, c.Client, webService("cip", "web", v1.ServiceTypeClusterIP))
	// Objects other proxies own, and headless ones, are not programmed.
	other := webService("cip", "other", v1.ServiceTypeClusterIP)
	other.Labels = map[string]string{labelServiceProxyName: "someone-else"}
	other = createService(t, c.Client, other)
	headless := webService("cip", "headless", v1.ServiceTypeClusterIP)
	headless.Spec.ClusterIP = v1.ClusterIPNone
	createService(t, c.Client, headless)

	sp := &servicePort{name: "cip/web:http", protocol: "tcp"}
	chain := svcChain(sp)
	// No endpoints yet: rejected in the filter table, nothing in nat.
	eventually(t, time.Second, "REJECT rule", func() bool {
		return strings.Contains(save(t, s.runner, "filter"),
			fmt.Sprintf(`-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment "cip/web:http has no endpoints" -m tcp --dport 80 -j REJECT`, svc.Spec.ClusterIP))
	})
	if nat := save(t, s.runner, "nat"); strings.Contains(nat, chain) {
		t.Fatalf("%s exists without endpoints:\n%s", chain, nat)
	}

	slice, err := c.Client.DiscoveryV1().EndpointSlices("cip").Create(ctx, endpointSlice(svc, "10.244.1.3", "10.244.1.1", "10.244.1.2"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherSlice := endpointSlice(other, "10.244.9.9")
	if _, err := c.Client.DiscoveryV1().EndpointSlices("cip").Create(ctx, otherSlice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var nat string
	took := eventually(t, time.Second, "three endpoints", func() bool {
		nat = save(t, s.runner, "nat")
		return len(svcJumps(nat, chain)) == 3
	})
	t.Logf("endpoints programmed %v after the EndpointSlice was created", took)
	jumps := svcJumps(nat, chain)
	for i, want := range []string{`10.244.1.1:8080" -m statistic --mode random --probability 0.33333`,
		`10.244.1.2:8080" -m statistic --mode random --probability 0.5`, `10.244.1.3:8080" -j KUBE-SEP-`} {
		if !strings.Contains(jumps[i], want) {
			t.Errorf("rule %d = %q, want it to contain %q", i, jumps[i], want)
		}
	}
	for _, want := range []string{
		fmt.Sprintf(`-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment "cip/web:http cluster IP" -m tcp --dport 80 -j %s`, svc.Spec.ClusterIP, chain),
		fmt.Sprintf(`-A %s ! -s 10.244.0.0/16 -d %s/32 -p tcp -m comment --comment "cip/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ`, chain, svc.Spec.ClusterIP),
		fmt.Sprintf(`-A %s -p tcp -m comment --comment "cip/web:http" -m tcp -j DNAT --to-destination 10.244.1.2:8080`, sepChain(sp, endpoint{ip: mustAddr("10.244.1.2"), port: 8080})),
		`-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000`,
		`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`,
	} {
		if !strings.Contains(nat, want+"\n") {
			t.Errorf("iptables-save -t nat lacks %q", want)
		}
	}
	if strings.Contains(nat, "10.244.9.9") || strings.Contains(nat, "cip/headless") || strings.Contains(nat, "cip/other") {
		t.Errorf("programmed a service of another proxy or a headless one:\n%s", nat)
	}
	if strings.Contains(save(t, s.runner, "filter"), "cip/web:http has no endpoints") {
		t.Error("REJECT rule still there with endpoints")
	}

	// 10.244.1.2 stops being ready.
	slice.Endpoints[2].Conditions.Ready = ptr.To(false)
	if slice, err = c.Client.DiscoveryV1().EndpointSlices("cip").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, time.Second, "not-ready endpoint dropped", func() bool {
		nat = save(t, s.runner, "nat")
		j := svcJumps(nat, chain)
		return len(j) == 2 && !strings.Contains(nat, "10.244.1.2:8080")
	})
	t.Logf("not-ready endpoint removed from the rules %v after the update", took)
	if j := svcJumps(nat, chain); !strings.Contains(j[0], "--probability 0.5") || strings.Contains(j[1], "--probability") {
		t.Errorf("two endpoints balanced as %q", j)
	}

	// 10.244.1.3 is removed from the slice.
	slice.Endpoints = slice.Endpoints[1:]
	if _, err = c.Client.DiscoveryV1().EndpointSlices("cip").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := sepChain(sp, endpoint{ip: mustAddr("10.244.1.3"), port: 8080})
	took = eventually(t, time.Second, "removed endpoint's chain deleted", func() bool {
		nat = save(t, s.runner, "nat")
		return len(svcJumps(nat, chain)) == 1 && !strings.Contains(nat, gone)
	})
	t.Logf("removed endpoint's chain deleted %v after the update", took)

	// The service goes: all its chains go.
	if err := c.Client.CoreV1().Services("cip").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "service chains deleted", func() bool {
		nat = save(t, s.runner, "nat")
		return !strings.Contains(nat, chain) && !strings.Contains(nat, "cip/web")
	})
	if left := regexp.MustCompile(`(?m)^:KUBE-(SVC|SEP|EXT|SVL)-`).FindAllString(nat, -1); len(left) > 0 {
		// Other subtests' services may exist; ours are checked by name above.
		t.Logf("per-service chains of other services: %d", len(left))
	}

	// Every sync was exactly one iptables-restore. Syncs are counted when
	// they end, so read the restores first and wait for quiet.
	eventually(t, 2*time.Second, "restores == syncs", func() bool {
		return uint64(s.runner.restores.Load()) == syncs(t, s.reg)
	})
	t.Logf("%d syncs, %d iptables-restore runs", syncs(t, s.reg), s.runner.restores.Load())
}

// testNodePort checks the NodePort rules: KUBE-NODEPORTS behind the
// local-address match, masquerade, and REJECT without endpoints.
func testNodePort(t *testing.T, c *testcluster.Cluster) {
	ctx := context.Background()
	s := startProxier(t, c, "")
	createNamespace(t, c.Client, "np")
	svc := createService(t, c.Client, webService("np", "web", v1.ServiceTypeNodePort))
	np := svc.Spec.Ports[0].NodePort
	if np == 0 {
		t.Fatal("no node port allocated")
	}
	eventually(t, time.Second, "NodePort REJECT", func() bool {
		return strings.Contains(save(t, s.runner, "filter"), fmt.Sprintf(
			`-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "np/web:http has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport %d -j REJECT`, np))
	})
	if _, err := c.Client.DiscoveryV1().EndpointSlices("np").Create(ctx, endpointSlice(svc, "10.244.2.1", "10.244.2.2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sp := &servicePort{name: "np/web:http", protocol: "tcp"}
	want := []string{
		fmt.Sprintf(`-A KUBE-NODEPORTS -p tcp -m comment --comment "np/web:http" -m tcp --dport %d -j %s`, np, extChain(sp)),
		fmt.Sprintf(`-A %s -m comment --comment "masquerade traffic for np/web:http external destinations" -j KUBE-MARK-MASQ`, extChain(sp)),
		fmt.Sprintf(`-A %s -j %s`, extChain(sp), svcChain(sp)),
		`-A KUBE-SERVICES ! -d 127.0.0.0/8 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`,
	}
	var nat string
	eventually(t, time.Second, "NodePort rules", func() bool {
		nat = save(t, s.runner, "nat")
		for _, w := range want {
			if !strings.Contains(nat, w+"\n") {
				return false
			}
		}
		return true
	})
	// The nodeports jump stays last in KUBE-SERVICES.
	var last string
	for _, l := range strings.Split(nat, "\n") {
		if strings.HasPrefix(l, "-A KUBE-SERVICES ") {
			last = l
		}
	}
	if last != want[3] {
		t.Errorf("last rule of KUBE-SERVICES is %q", last)
	}
	if strings.Contains(save(t, s.runner, "filter"), "np/web:http has no endpoints") {
		t.Error("NodePort REJECT still there with endpoints")
	}
}

// testCleanup checks that Cleanup, run after the proxier stopped, leaves
// no KUBE-* chain and no jump to one, keeps other rules, and that a
// second Cleanup has nothing to do.
func testCleanup(t *testing.T, c *testcluster.Cluster) {
	ctx := context.Background()
	s := startProxier(t, c, "10.244.0.0/16")
	createNamespace(t, c.Client, "clean")
	svc := createService(t, c.Client, webService("clean", "web", v1.ServiceTypeNodePort))
	if _, err := c.Client.DiscoveryV1().EndpointSlices("clean").Create(ctx, endpointSlice(svc, "10.244.3.1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "service programmed", func() bool {
		return strings.Contains(save(t, s.runner, "nat"), "clean/web:http")
	})
	// Someone else's rules in the built-in chains survive.
	run(t, "ip", "netns", "exec", s.netns, s.runner.iptables(), "-t", "nat", "-A", "POSTROUTING", "-s", "10.99.0.0/16", "-j", "MASQUERADE")
	run(t, "ip", "netns", "exec", s.netns, s.runner.iptables(), "-t", "filter", "-A", "FORWARD", "-s", "10.99.0.0/16", "-j", "ACCEPT")
	s.stop()

	// A fresh runner: Cleanup needs nothing from the proxier.
	r := newRunner(t, s.path)
	if err := Cleanup(ctx, r); err != nil {
		t.Fatal(err)
	}
	if n := r.restores.Load(); n != 1 {
		t.Errorf("Cleanup ran iptables-restore %d times, want 1", n)
	}
	for _, table := range []string{"filter", "nat"} {
		out := save(t, r, table)
		if strings.Contains(out, "KUBE-") {
			t.Errorf("KUBE-* left in %s:\n%s", table, out)
		}
		if !strings.Contains(out, "-s 10.99.0.0/16") {
			t.Errorf("Cleanup removed another rule from %s:\n%s", table, out)
		}
	}
	if err := Cleanup(ctx, r); err != nil {
		t.Fatal(err)
	}
	if n := r.restores.Load(); n != 1 {
		t.Errorf("second Cleanup ran iptables-restore (%d runs in all)", n)
	}
}

// testRestart checks that a proxier starting over rules a previous one
// left (the worker restarted while a service was deleted) removes the
// chains of the gone service and keeps the others working.
func testRestart(t *testing.T, c *testcluster.Cluster) {
	ctx := context.Background()
	name, path := newNetNS(t)
	first := startProxierIn(t, c, name, path, Config{})
	createNamespace(t, c.Client, "restart")
	keep := createService(t, c.Client, webService("restart", "keep", v1.ServiceTypeClusterIP))
	drop := createService(t, c.Client, webService("restart", "drop", v1.ServiceTypeClusterIP))
	for _, svc := range []*v1.Service{keep, drop} {
		if _, err := c.Client.DiscoveryV1().EndpointSlices("restart").Create(ctx, endpointSlice(svc, "10.244.4.1", "10.244.4.2"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	keepChain := svcChain(&servicePort{name: "restart/keep:http", protocol: "tcp"})
	dropSP := &servicePort{name: "restart/drop:http", protocol: "tcp"}
	eventually(t, time.Second, "both services programmed", func() bool {
		nat := save(t, first.runner, "nat")
		return len(svcJumps(nat, keepChain)) == 2 && len(svcJumps(nat, svcChain(dropSP))) == 2
	})
	first.stop()
	if err := c.Client.CoreV1().Services("restart").Delete(ctx, "drop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	second := startProxierIn(t, c, name, path, Config{})
	nat := save(t, second.runner, "nat") // startProxierIn waited for the first sync
	for _, gone := range []string{svcChain(dropSP), sepChain(dropSP, endpoint{ip: mustAddr("10.244.4.1"), port: 8080})} {
		if strings.Contains(nat, gone) {
			t.Errorf("%s survived the restart:\n%s", gone, nat)
		}
	}
	if len(svcJumps(nat, keepChain)) != 2 {
		t.Errorf("restart/keep lost its rules:\n%s", nat)
	}
	// The jumps from the built-in chains were not duplicated.
	if n := strings.Count(nat, "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"); n != 1 {
		t.Errorf("%d jumps from nat OUTPUT to KUBE-SERVICES", n)
	}
	filter := save(t, second.runner, "filter")
	for chain, n := range map[string]int{"INPUT": 1, "FORWARD": 3, "OUTPUT": 1} {
		if got := strings.Count(filter, "-A "+chain+" "); got != n {
			t.Errorf("filter %s has %d rules, want %d:\n%s", chain, got, n, filter)
		}
	}
}

// testRepairJumps checks that the periodic sync puts back a jump someone
// deleted from a built-in chain.
func testRepairJumps(t *testing.T, c *testcluster.Cluster) {
	name, path := newNetNS(t)
	s := startProxierIn(t, c, name, path, Config{SyncPeriod: 200 * time.Millisecond})
	run(t, "ip", "netns", "exec", name, s.runner.iptables(), "-t", "nat", "-D", "PREROUTING",
		"-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")
	took := eventually(t, 2*time.Second, "jump repaired", func() bool {
		return strings.Contains(save(t, s.runner, "nat"), `-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	})
	t.Logf("jump repaired after %v", took)
}
