package network

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// node is one simulated worker: its own network namespace standing in for
// the host, with a Network in it.
type node struct {
	name, path string
	net        *Network
	stateDir   string
	podCIDR    string
}

func newNode(t *testing.T, podCIDR, clusterCIDR string) *node {
	t.Helper()
	name, path := testNS(t, "node")
	nd := &node{name: name, path: path, stateDir: t.TempDir(), podCIDR: podCIDR}
	nd.net = nd.open(t, clusterCIDR)
	return nd
}

func (nd *node) open(t *testing.T, clusterCIDR string) *Network {
	t.Helper()
	n, err := New(Config{PodCIDR: nd.podCIDR, ClusterCIDR: clusterCIDR, StateDir: nd.stateDir, NetNS: nd.path})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

type pod struct {
	id, ns, path string
	ip           net.IP
}

func (nd *node) addPod(t *testing.T, id string) *pod {
	t.Helper()
	name, path := testNS(t, "pod")
	ip, err := nd.net.Setup(context.Background(), id, path)
	if err != nil {
		t.Fatalf("Setup(%s): %v", id, err)
	}
	return &pod{id: id, ns: name, path: path, ip: ip}
}

func TestPodsOnOneNodeReachEachOtherAndTheNode(t *testing.T) {
	requireKernel(t)
	reg := prometheus.NewRegistry()
	name, path := testNS(t, "node")
	n, err := New(Config{PodCIDR: "10.250.1.0/24", StateDir: t.TempDir(), NetNS: path, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	nd := &node{name: name, path: path, net: n, podCIDR: "10.250.1.0/24"}
	a := nd.addPod(t, "default/a")
	b := nd.addPod(t, "default/b")

	_, cidr, _ := net.ParseCIDR("10.250.1.0/24")
	for _, p := range []*pod{a, b} {
		if !cidr.Contains(p.ip) || p.ip.Equal(n.Gateway()) {
			t.Fatalf("pod %s got IP %s; want one in %s other than the gateway", p.id, p.ip, cidr)
		}
	}
	if a.ip.Equal(b.ip) {
		t.Fatalf("both pods got %s", a.ip)
	}
	if got := n.Gateway().String(); got != "10.250.1.1" {
		t.Fatalf("gateway %s; want 10.250.1.1", got)
	}

	// What the kernel sees: eth0 with the IP, default route via the bridge.
	addr := inNS(t, a.ns, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	if !strings.Contains(addr, a.ip.String()+"/24") {
		t.Fatalf("pod eth0: %s", addr)
	}
	if r := inNS(t, a.ns, "ip", "route", "show", "default"); !strings.Contains(r, "via 10.250.1.1 dev eth0") {
		t.Fatalf("pod default route: %q", r)
	}
	if l := inNS(t, a.ns, "ip", "-o", "link", "show", "lo"); !strings.Contains(l, "UP") {
		t.Fatalf("pod lo not up: %s", l)
	}
	if br := inNS(t, nd.name, "ip", "-4", "-o", "addr", "show", "dev", DefaultBridgeName); !strings.Contains(br, "10.250.1.1/24") {
		t.Fatalf("bridge address: %s", br)
	}
	if v := strings.TrimSpace(inNS(t, nd.name, "cat", "/proc/sys/net/ipv4/ip_forward")); v != "1" {
		t.Fatalf("ip_forward in node netns = %s", v)
	}

	if out, err := exec.Command("ip", "netns", "exec", nd.name, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables").Output(); err == nil {
		if strings.TrimSpace(string(out)) != "1" {
			t.Fatalf("bridge-nf-call-iptables in node netns = %s", out)
		}
	}
	if l := inNS(t, nd.name, "ip", "-d", "-o", "link", "show", hostVethName(a.id)); !strings.Contains(l, "master "+DefaultBridgeName) || !strings.Contains(l, "hairpin on") {
		t.Fatalf("host veth not a hairpin port of the bridge: %s", l)
	}

	ping(t, a.ns, b.ip)
	ping(t, b.ns, a.ip)
	ping(t, a.ns, n.Gateway())
	ping(t, nd.name, a.ip)

	// Pod to pod on one bridge is not masqueraded, nor is pod to node.
	if seen := whoAmI(t, a.path, whoAmIServer(t, b.path, b.ip, 8080)); seen != a.ip.String() {
		t.Fatalf("pod b saw source %s; want pod a's %s", seen, a.ip)
	}
	if seen := whoAmI(t, b.path, whoAmIServer(t, nd.path, n.Gateway(), 8081)); seen != b.ip.String() {
		t.Fatalf("node saw source %s; want pod b's %s", seen, b.ip)
	}

	// A repeated Setup (kubelet retry or restart) changes nothing.
	again, err := n.Setup(context.Background(), a.id, a.path)
	if err != nil || !again.Equal(a.ip) {
		t.Fatalf("second Setup = %s, %v; want %s", again, err, a.ip)
	}
	ping(t, a.ns, b.ip)

	// A Setup that fails (no such namespace) leaks no IP.
	if _, err := n.Setup(context.Background(), "default/broken", "/run/netns/does-not-exist"); err == nil {
		t.Fatal("Setup into a missing netns succeeded")
	}
	if ip := n.PodIP("default/broken"); ip != nil {
		t.Fatalf("failed Setup kept %s", ip)
	}
	if got := gauge(t, reg, "synod_network_allocated_pod_ips"); got != 2 {
		t.Fatalf("allocated IPs metric = %v; want 2", got)
	}
}

func TestPodsOnTwoNodesReachEachOtherViaHostGW(t *testing.T) {
	requireKernel(t)
	const cluster = "10.250.0.0/16"
	A := newNode(t, "10.250.1.0/24", cluster)
	B := newNode(t, "10.250.2.0/24", cluster)
	link(t, A.name, B.name, "lan0", "192.168.77.1/24", "192.168.77.2/24")
	a := A.addPod(t, "default/a")
	b := B.addPod(t, "default/b")

	ctx := context.Background()
	// Each node gets the full peer list, own entry included (as built from
	// the Node list); its own podCIDR is skipped.
	peers := []Peer{{PodCIDR: "10.250.1.0/24", NodeIP: "192.168.77.1"}, {PodCIDR: "10.250.2.0/24", NodeIP: "192.168.77.2"}}
	if err := A.net.SetRoutes(ctx, peers); err != nil {
		t.Fatalf("SetRoutes A: %v", err)
	}
	if err := B.net.SetRoutes(ctx, peers); err != nil {
		t.Fatalf("SetRoutes B: %v", err)
	}
	if r := inNS(t, A.name, "ip", "route", "show", "proto", "83"); !strings.Contains(r, "10.250.2.0/24 via 192.168.77.2 dev lan0") {
		t.Fatalf("node A host-gw routes: %q", r)
	}

	ping(t, a.ns, b.ip)
	ping(t, b.ns, a.ip)
	ping(t, a.ns, net.ParseIP("192.168.77.2")) // the other node
	// Inside the cluster CIDR the source IP is kept.
	if seen := whoAmI(t, a.path, whoAmIServer(t, b.path, b.ip, 8080)); seen != a.ip.String() {
		t.Fatalf("pod b saw source %s; want pod a's %s", seen, a.ip)
	}

	// Leaving the cluster: a host beyond node A with no route to any pod
	// CIDR answers only because node A masquerades.
	outName, outPath := testNS(t, "out")
	link(t, A.name, outName, "ext0", "192.168.88.1/24", "192.168.88.2/24")
	srv := whoAmIServer(t, outPath, net.ParseIP("192.168.88.2"), 8082)
	if seen := whoAmI(t, a.path, srv); seen != "192.168.88.1" {
		t.Fatalf("outside host saw source %s; want node A's 192.168.88.1 (masqueraded)", seen)
	}

	// A peer that is gone loses its route; the pods lose each other.
	if err := A.net.SetRoutes(ctx, nil); err != nil {
		t.Fatalf("SetRoutes A (empty): %v", err)
	}
	if r := inNS(t, A.name, "ip", "route", "show", "proto", "83"); strings.TrimSpace(r) != "" {
		t.Fatalf("stale host-gw routes left: %q", r)
	}
	cannotConnect(t, a.path, srvAddr(b.ip, 8080))
	// And comes back.
	if err := A.net.SetRoutes(ctx, peers); err != nil {
		t.Fatalf("SetRoutes A again: %v", err)
	}
	ping(t, a.ns, b.ip)

	// Bad entries are reported, good ones still applied.
	err := A.net.SetRoutes(ctx, append([]Peer{{PodCIDR: "nonsense", NodeIP: "192.168.77.9"}, {PodCIDR: "10.250.1.128/25", NodeIP: "192.168.77.2"}}, peers...))
	if err == nil {
		t.Fatal("SetRoutes with bad peers succeeded")
	}
	ping(t, a.ns, b.ip)
}

func srvAddr(ip net.IP, port int) string {
	return net.JoinHostPort(ip.String(), fmt.Sprint(port))
}

func TestPodIPsAreUniqueAndSurviveRestart(t *testing.T) {
	requireKernel(t)
	nd := newNode(t, "10.250.3.0/24", "")
	ctx := context.Background()

	// Concurrent setups, as a kubelet starting many pods does.
	pods := make([]*pod, 8)
	var wg sync.WaitGroup
	for i := range pods {
		name, path := testNS(t, "pod")
		pods[i] = &pod{id: fmt.Sprintf("ns/p%d", i+1), ns: name, path: path}
	}
	errs := make(chan error, len(pods))
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip, err := nd.net.Setup(ctx, p.id, p.path)
			p.ip = ip
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]string{}
	for _, p := range pods {
		if other, dup := seen[p.ip.String()]; dup {
			t.Fatalf("pods %s and %s both got %s", other, p.id, p.ip)
		}
		seen[p.ip.String()] = p.id
	}

	// A restarted kubelet: a new Network on the same StateDir.
	n2 := nd.open(t, "")
	for _, p := range pods {
		if got := n2.PodIP(p.id); !got.Equal(p.ip) {
			t.Fatalf("after restart pod %s has %s; want %s", p.id, got, p.ip)
		}
		ip, err := n2.Setup(ctx, p.id, p.path)
		if err != nil || !ip.Equal(p.ip) {
			t.Fatalf("Setup after restart for %s = %s, %v; want %s", p.id, ip, err, p.ip)
		}
	}
	if got := len(n2.Allocated()); got != len(pods) {
		t.Fatalf("Allocated() has %d pods; want %d", got, len(pods))
	}
	newPod := &pod{id: "ns/new"}
	newPod.ns, newPod.path = testNS(t, "pod")
	ip, err := n2.Setup(ctx, newPod.id, newPod.path)
	if err != nil {
		t.Fatal(err)
	}
	if other, dup := seen[ip.String()]; dup {
		t.Fatalf("new pod got %s, already held by %s", ip, other)
	}
	ping(t, newPod.ns, pods[0].ip)
	ping(t, pods[len(pods)-1].ns, ip)
}

func TestTeardownReleasesIPAndIsIdempotent(t *testing.T) {
	requireKernel(t)
	nd := newNode(t, "10.250.4.0/24", "")
	ctx := context.Background()
	a := nd.addPod(t, "default/a")
	b := nd.addPod(t, "default/b")
	ping(t, a.ns, b.ip)

	if err := nd.net.Teardown(ctx, a.id, a.path); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if nd.net.PodIP(a.id) != nil {
		t.Fatalf("pod a still holds %s", nd.net.PodIP(a.id))
	}
	if l := inNS(t, nd.name, "ip", "-o", "link", "show"); strings.Contains(l, hostVethName(a.id)) {
		t.Fatalf("host veth %s still there:\n%s", hostVethName(a.id), l)
	}
	if l := inNS(t, a.ns, "ip", "-o", "link", "show"); strings.Contains(l, "eth0") {
		t.Fatalf("pod eth0 still there:\n%s", l)
	}
	if err := nd.net.Teardown(ctx, a.id, a.path); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	// Teardown after the pod's namespace is gone (kubelet restarted after
	// the sandbox was removed) still releases the IP.
	if err := DeleteNetNS(b.ns); err != nil {
		t.Fatal(err)
	}
	if err := nd.net.Teardown(ctx, b.id, b.path); err != nil {
		t.Fatalf("Teardown without netns: %v", err)
	}
	if len(nd.net.Allocated()) != 0 {
		t.Fatalf("allocations left: %v", nd.net.Allocated())
	}
	// The state on disk agrees.
	n2 := nd.open(t, "")
	if len(n2.Allocated()) != 0 {
		t.Fatalf("allocations after restart: %v", n2.Allocated())
	}
	// The pod can be set up again in its old namespace.
	ip, err := nd.net.Setup(ctx, a.id, a.path)
	if err != nil {
		t.Fatalf("Setup after Teardown: %v", err)
	}
	ping(t, a.ns, nd.net.Gateway())
	_ = ip
}

func TestCleanupLeavesNothing(t *testing.T) {
	requireKernel(t)
	A := newNode(t, "10.250.5.0/24", "")
	B := newNode(t, "10.250.6.0/24", "")
	link(t, A.name, B.name, "lan0", "192.168.77.1/24", "192.168.77.2/24")
	ctx := context.Background()
	A.addPod(t, "default/a")
	A.addPod(t, "default/b")
	if err := A.net.SetRoutes(ctx, []Peer{{PodCIDR: B.podCIDR, NodeIP: "192.168.77.2"}}); err != nil {
		t.Fatal(err)
	}
	// Without a ClusterCIDR the peer's podCIDR is exempted from masquerade.
	nat := inNS(t, A.name, A.net.IPTables().IPTables, "-t", "nat", "-S", ChainPostrouting)
	if !strings.Contains(nat, "-d 10.250.6.0/24 -j RETURN") || !strings.Contains(nat, "MASQUERADE") {
		t.Fatalf("nat chain:\n%s", nat)
	}
	if f := inNS(t, A.name, A.net.IPTables().IPTables, "-S", "FORWARD"); !strings.Contains(f, "-j "+ChainForward) {
		t.Fatalf("FORWARD has no jump:\n%s", f)
	}

	if err := A.net.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	links := inNS(t, A.name, "ip", "-o", "link", "show")
	if strings.Contains(links, DefaultBridgeName) || strings.Contains(links, "syn") {
		t.Fatalf("links left after Cleanup:\n%s", links)
	}
	if r := inNS(t, A.name, "ip", "route", "show", "proto", "83"); strings.TrimSpace(r) != "" {
		t.Fatalf("routes left: %q", r)
	}
	for _, table := range []string{"nat", "filter"} {
		if s := inNS(t, A.name, A.net.IPTables().IPTables, "-t", table, "-S"); strings.Contains(s, "SYNOD") {
			t.Fatalf("%s table still has synod rules:\n%s", table, s)
		}
	}
	if _, err := os.Stat(filepath.Join(A.stateDir, ipamFile)); !os.IsNotExist(err) {
		t.Fatalf("IPAM state still there: %v", err)
	}
	// Idempotent, and the node can be set up again afterwards.
	if err := A.net.Cleanup(ctx); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	c := A.addPod(t, "default/c")
	ping(t, c.ns, A.net.Gateway())
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []Config{
		{PodCIDR: "", StateDir: dir},
		{PodCIDR: "fd00::/64", StateDir: dir},
		{PodCIDR: "10.0.0.0/30", StateDir: dir},
		{PodCIDR: "10.0.0.0/24"},
		{PodCIDR: "10.0.0.0/24", StateDir: dir, ClusterCIDR: "10.1.0.0/16"},
		{PodCIDR: "10.0.0.0/24", StateDir: dir, BridgeName: "a-very-long-bridge-name"},
		{PodCIDR: "10.0.0.0/24", StateDir: dir, NetNS: dir},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestNetNSHelpers(t *testing.T) {
	requireKernel(t)
	name, path := testNS(t, "h")
	again, err := NewNetNS(name)
	if err != nil || again != path {
		t.Fatalf("NewNetNS again = %s, %v; want %s", again, err, path)
	}
	if !isNetNS(path) {
		t.Fatalf("%s is not a netns", path)
	}
	// It really is a separate namespace: no links but lo.
	if l := inNS(t, name, "ip", "-o", "link", "show"); strings.Count(l, "\n") != 1 || !strings.Contains(l, "lo:") {
		t.Fatalf("links in a new netns:\n%s", l)
	}
	if err := DeleteNetNS(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("%s still exists: %v", path, err)
	}
	if err := DeleteNetNS(name); err != nil {
		t.Fatalf("second DeleteNetNS: %v", err)
	}
	if _, err := NewNetNS("../x"); err == nil {
		t.Fatal("NewNetNS accepted a path")
	}
}

// gauge reads a gauge's value from the registry.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
