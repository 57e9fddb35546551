package proxy

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestChainNames checks the hash against chain names every kube-proxy
// cluster has, so tools and habits that know them keep working.
func TestChainNames(t *testing.T) {
	for _, c := range []struct{ name, proto, want string }{
		{"default/kubernetes:https", "tcp", "KUBE-SVC-NPX46M4PTMTKRN6Y"},
		{"kube-system/kube-dns:dns", "udp", "KUBE-SVC-TCOU7JCQXEZGVUNU"},
		{"kube-system/kube-dns:dns-tcp", "tcp", "KUBE-SVC-ERIFXISQEP7F7OF4"},
	} {
		if got := svcChain(&servicePort{name: c.name, protocol: c.proto}); got != c.want {
			t.Errorf("chain of %s/%s = %s, want %s", c.name, c.proto, got, c.want)
		}
	}
}

func service(ns, name, ip string, typ v1.ServiceType, ports ...v1.ServicePort) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Type: typ, Ports: ports},
	}
}

type ep struct {
	ip, node                    string
	ready, serving, terminating bool
}

func slice(ns, svc, portName string, proto v1.Protocol, port int32, eps ...ep) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc", Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To(portName), Protocol: ptr.To(proto), Port: ptr.To(port)}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{
			Addresses: []string{e.ip},
			NodeName:  ptr.To(e.node),
			Conditions: discovery.EndpointConditions{
				Ready: ptr.To(e.ready), Serving: ptr.To(e.serving), Terminating: ptr.To(e.terminating),
			},
		})
	}
	return s
}

// samplePorts covers each kind of rule the generator writes.
func samplePorts() []servicePort {
	var ports []servicePort
	add := func(svc *v1.Service, s ...*discovery.EndpointSlice) {
		ports = append(ports, servicePorts(svc, s, "node-a")...)
	}
	ready := func(ip, node string) ep { return ep{ip: ip, node: node, ready: true, serving: true} }

	// NodePort with three ready endpoints (sorted by address, not as
	// listed) and one that is not ready.
	web := service("ns1", "web", "10.96.0.10", v1.ServiceTypeNodePort,
		v1.ServicePort{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30080})
	add(web, slice("ns1", "web", "http", v1.ProtocolTCP, 8080,
		ready("10.244.1.10", "node-a"), ready("10.244.2.3", "node-b"), ready("10.244.1.2", "node-a"),
		ep{ip: "10.244.1.5", node: "node-a"}))

	// No endpoints at all: REJECT for the cluster IP and the NodePort.
	empty := service("ns1", "empty", "10.96.0.11", v1.ServiceTypeNodePort,
		v1.ServicePort{Protocol: v1.ProtocolUDP, Port: 53, NodePort: 30053})
	add(empty)

	// ClientIP affinity; its only endpoint is terminating but still
	// serving, which is used since none is ready.
	sticky := service("ns1", "sticky", "10.96.0.12", v1.ServiceTypeClusterIP,
		v1.ServicePort{Protocol: v1.ProtocolTCP, Port: 443})
	sticky.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	sticky.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	add(sticky, slice("ns1", "sticky", "", v1.ProtocolTCP, 8443,
		ep{ip: "10.244.2.7", node: "node-b", serving: true, terminating: true},
		ep{ip: "10.244.2.8", node: "node-b", terminating: true}))

	// externalTrafficPolicy Local: one endpoint here, one elsewhere.
	local := service("ns2", "local", "10.96.0.13", v1.ServiceTypeNodePort,
		v1.ServicePort{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30081})
	local.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	add(local, slice("ns2", "local", "http", v1.ProtocolTCP, 80, ready("10.244.1.20", "node-a"), ready("10.244.2.20", "node-b")))

	// externalTrafficPolicy Local without a local endpoint: DROP.
	remote := service("ns2", "remote", "10.96.0.14", v1.ServiceTypeNodePort,
		v1.ServicePort{Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30082})
	remote.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	add(remote, slice("ns2", "remote", "", v1.ProtocolTCP, 80, ready("10.244.2.30", "node-b")))

	// Skipped: headless, ExternalName, IPv6-only.
	add(service("ns3", "headless", v1.ClusterIPNone, v1.ServiceTypeClusterIP, v1.ServicePort{Port: 80}))
	add(&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns3", Name: "ext"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "example.com"}})
	add(service("ns3", "v6", "fd00::10", v1.ServiceTypeClusterIP, v1.ServicePort{Port: 80}))
	return ports
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the generated rules:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestGenerateGolden compares the full restore input for the sample
// services with the reviewed text in testdata/full.restore.
func TestGenerateGolden(t *testing.T) {
	rs := generate(samplePorts(), "10.244.0.0/16")
	golden(t, "full.restore", restoreData(rs, nil, []string{"KUBE-SEP-OLDOLDOLDOLDOLDO"}))
}

// TestPartialRestore checks that a sync after a change writes only the
// top-level chains and the chains that changed, and deletes the chains of
// a removed endpoint.
func TestPartialRestore(t *testing.T) {
	ports := samplePorts()
	before := generate(ports, "10.244.0.0/16")
	// web loses endpoint 10.244.2.3.
	for i := range ports {
		if ports[i].name == "ns1/web:http" {
			ports[i].endpoints = ports[i].endpoints[:2]
		}
	}
	after := generate(ports, "10.244.0.0/16")
	gone := sepChain(&servicePort{name: "ns1/web:http", protocol: "tcp"}, endpoint{ip: mustAddr("10.244.2.3"), port: 8080})
	if _, ok := after.nat.rules[gone]; ok {
		t.Fatalf("%s still generated", gone)
	}
	golden(t, "partial.restore", restoreData(after, before, []string{gone}))
	data := string(restoreData(after, before, []string{gone}))
	for _, unchanged := range []string{svcChain(&servicePort{name: "ns1/sticky", protocol: "tcp"}), extChain(&servicePort{name: "ns2/local:http", protocol: "tcp"})} {
		if strings.Contains(data, ":"+unchanged+" ") {
			t.Errorf("unchanged chain %s rewritten", unchanged)
		}
	}
}

// TestGoldenAppliesToKernel feeds the golden restore input (every kind of
// rule the generator writes: affinity, Local policy, REJECT and DROP,
// UDP, a stale chain) to the real iptables-restore in a fresh namespace,
// then the partial update on top of it.
func TestGoldenAppliesToKernel(t *testing.T) {
	requireNetNS(t)
	_, path := newNetNS(t)
	r := newRunner(t, path)
	if err := ensureJumps(r); err != nil {
		t.Fatal(err)
	}
	before := generate(samplePorts(), "10.244.0.0/16")
	if err := r.Restore(context.Background(), restoreData(before, nil, nil)); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(filepath.Join("testdata", "full.restore"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(context.Background(), full); err != nil {
		t.Fatal(err)
	}
	partial, err := os.ReadFile(filepath.Join("testdata", "partial.restore"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(context.Background(), partial); err != nil {
		t.Fatal(err)
	}
	nat := save(t, r, "nat")
	for _, want := range []string{"-m recent --rcheck --seconds 60 --reap --name KUBE-SEP-OMFBLZLM2JZDCGVN", "-j KUBE-SVL-K5TNFMNM3UKAC2VD"} {
		if !strings.Contains(nat, want) {
			t.Errorf("nat table lacks %q", want)
		}
	}
	for _, gone := range []string{"KUBE-SEP-OLDOLDOLDOLDOLDO", "KUBE-SEP-ODQXN5PJFWHJCIMV"} {
		if strings.Contains(nat, gone) {
			t.Errorf("%s not deleted", gone)
		}
	}
}
