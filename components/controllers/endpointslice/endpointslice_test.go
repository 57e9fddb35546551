package endpointslice

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"synod/components/controllers/garbagecollector"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

func pod(name string, lbls map[string]string, port int32) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Spec: v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "c", Image: "busybox",
			Ports: []v1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: v1.ProtocolTCP}}}}}}
}

// setStatus plays the kubelet: the pod runs with ip, ready or not.
func setStatus(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name, ip string, ready bool) {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := v1.ConditionFalse
	if ready {
		st = v1.ConditionTrue
	}
	p.Status.Phase = v1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []v1.PodIP{{IP: ip}}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func slicesOf(ctx context.Context, cs kubernetes.Interface, ns, svc string) ([]discovery.EndpointSlice, error) {
	l, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discovery.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items, nil
}

func flag(b *bool) string {
	if b != nil && *b {
		return "1"
	}
	return "0"
}

// summary renders a service's slices as "pod:ip:RST,... ports=..." per
// slice (R ready, S serving, T terminating), endpoints sorted.
func summary(slices []discovery.EndpointSlice) string {
	var out []string
	for _, s := range slices {
		var eps []string
		for _, e := range s.Endpoints {
			eps = append(eps, fmt.Sprintf("%s:%s:%s%s%s", e.TargetRef.Name, strings.Join(e.Addresses, ","),
				flag(e.Conditions.Ready), flag(e.Conditions.Serving), flag(e.Conditions.Terminating)))
		}
		sort.Strings(eps)
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d", *p.Name, *p.Port))
		}
		out = append(out, fmt.Sprintf("[%s ports=%s]", strings.Join(eps, " "), strings.Join(ports, ",")))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func waitSlices(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, svc, want string) []discovery.EndpointSlice {
	t.Helper()
	var last string
	for {
		slices, err := slicesOf(ctx, cs, ns, svc)
		if err == nil {
			if last = summary(slices); last == want {
				return slices
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("slices of %s/%s:\n got %s\nwant %s", ns, svc, last, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func names(slices []discovery.EndpointSlice) string {
	var n []string
	for _, s := range slices {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

func TestEndpointSlices(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	// The garbage collector removes a deleted service's slices.
	testcluster.RunControllers(t, cc, New, garbagecollector.New)
	cs := c.Client
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ns = "default"
	pods := cs.CoreV1().Pods(ns)
	if _, err := cs.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1",
		Labels: map[string]string{v1.LabelTopologyZone: "zone-a"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, ready := range []bool{true, false} {
		name := fmt.Sprintf("web-%d", i)
		if _, err := pods.Create(ctx, pod(name, map[string]string{"app": "web"}, 8080), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		setStatus(t, ctx, cs, ns, name, fmt.Sprintf("10.2.0.%d", i+1), ready)
	}
	if _, err := pods.Create(ctx, pod("db-0", map[string]string{"app": "db"}, 8080), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setStatus(t, ctx, cs, ns, "db-0", "10.2.0.9", true)

	svc, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"tier": "front"}},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slices := waitSlices(t, ctx, cs, ns, "web", "[web-0:10.2.0.1:110 web-1:10.2.0.2:000 ports=http:8080]")
	s := slices[0]
	if !strings.HasPrefix(s.Name, "web-") || s.AddressType != discovery.AddressTypeIPv4 ||
		s.Labels[discovery.LabelManagedBy] != ControllerName || s.Labels["tier"] != "front" ||
		len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != svc.UID || s.OwnerReferences[0].Kind != "Service" {
		t.Fatalf("slice metadata: %s %s %v %v", s.Name, s.AddressType, s.Labels, s.OwnerReferences)
	}
	e := s.Endpoints[0]
	if e.NodeName == nil || *e.NodeName != "n1" || e.Zone == nil || *e.Zone != "zone-a" || e.TargetRef.Kind != "Pod" || e.TargetRef.UID == "" {
		t.Fatalf("endpoint: %+v", e)
	}
	if _, err := time.Parse(time.RFC3339Nano, s.Annotations[v1.EndpointsLastChangeTriggerTime]); err != nil {
		t.Fatalf("trigger time: %v", s.Annotations)
	}
	first := s.Name

	// Readiness changes update the slice in place.
	setStatus(t, ctx, cs, ns, "web-1", "10.2.0.2", true)
	slices = waitSlices(t, ctx, cs, ns, "web", "[web-0:10.2.0.1:110 web-1:10.2.0.2:110 ports=http:8080]")
	setStatus(t, ctx, cs, ns, "web-0", "10.2.0.1", false)
	slices = waitSlices(t, ctx, cs, ns, "web", "[web-0:10.2.0.1:000 web-1:10.2.0.2:110 ports=http:8080]")
	if names(slices) != first {
		t.Fatalf("slice replaced (%s), want %s updated in place", names(slices), first)
	}
	// A terminating pod (bound, no kubelet finishes it) stays, marked.
	setStatus(t, ctx, cs, ns, "web-0", "10.2.0.1", true)
	if err := pods.Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSlices(t, ctx, cs, ns, "web", "[web-0:10.2.0.1:011 web-1:10.2.0.2:110 ports=http:8080]")

	// A selector change swaps the endpoints within the same slice.
	svc, _ = cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	svc.Spec.Selector = map[string]string{"app": "db"}
	if _, err := cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	slices = waitSlices(t, ctx, cs, ns, "web", "[db-0:10.2.0.9:110 ports=http:8080]")
	if names(slices) != first {
		t.Fatalf("slice replaced (%s), want %s updated in place", names(slices), first)
	}

	// A slice deleted by hand comes back.
	if err := cs.DiscoveryV1().EndpointSlices(ns).Delete(ctx, first, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	slices = waitSlices(t, ctx, cs, ns, "web", "[db-0:10.2.0.9:110 ports=http:8080]")
	if names(slices) == first {
		t.Fatal("deleted slice still listed")
	}

	// No matching pods: one empty placeholder slice.
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "empty"},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "none"}, Ports: []v1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSlices(t, ctx, cs, ns, "empty", "[ ports=]")

	// More than 100 endpoints: 100 per slice.
	const many = 130
	for i := 0; i < many; i++ {
		name := fmt.Sprintf("big-%03d", i)
		if _, err := pods.Create(ctx, pod(name, map[string]string{"app": "big"}, 9000), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		setStatus(t, ctx, cs, ns, name, fmt.Sprintf("10.3.%d.%d", i/200, i%200+1), true)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "big"},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "big"}, Ports: []v1.ServicePort{{Name: "p", Port: 80, TargetPort: intstr.FromInt32(9000)}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		slices, err := slicesOf(ctx, cs, ns, "big")
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		total := 0
		for _, s := range slices {
			sizes = append(sizes, len(s.Endpoints))
			total += len(s.Endpoints)
		}
		sort.Ints(sizes)
		if fmt.Sprint(sizes) == "[30 100]" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("slices of a %d-pod service: sizes %v", many, sizes)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Deleting the service leaves its slices to the garbage collector.
	for _, name := range []string{"web", "big"} {
		if err := cs.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for {
			slices, err := slicesOf(ctx, cs, ns, name)
			if err == nil && len(slices) == 0 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("slices of deleted service %s: %d (%v)", name, len(slices), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// A service without a selector gets no slices from this controller.
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "manual"},
		Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Once a later service has its slice, "manual" has long been synced.
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "after"},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSlices(t, ctx, cs, ns, "after", "[db-0:10.2.0.9:110 ports=http:8080]")
	if slices, err := slicesOf(ctx, cs, ns, "manual"); err != nil || len(slices) != 0 {
		t.Fatalf("selector-less service got slices: %v %v", err, names(slices))
	}
}

// The reconciler keeps endpoints in their slices and fills existing slices
// before creating new ones.
func TestReconcileMinimalChurn(t *testing.T) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", UID: "svc-uid"}}
	name, port, proto := "p", int32(80), v1.ProtocolTCP
	ports := []discovery.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}}
	ep := func(i int) *discovery.Endpoint {
		t := true
		return &discovery.Endpoint{Addresses: []string{fmt.Sprintf("10.0.0.%d", i)},
			Conditions: discovery.EndpointConditions{Ready: &t, Serving: &t, Terminating: new(bool)},
			TargetRef:  &v1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: fmt.Sprintf("p%d", i)}}
	}
	want := func(ids ...int) desiredState {
		set := newEndpointSet()
		for _, i := range ids {
			e := ep(i)
			set.m[endpointKey(e)] = e
		}
		return desiredState{ports: map[string][]discovery.EndpointPort{portsKey(ports): ports}, endpoints: map[string]*endpointSet{portsKey(ports): set}}
	}
	existing := func(sliceName string, ids ...int) *discovery.EndpointSlice {
		s := newSlice(svc, ports)
		s.Name, s.UID = sliceName, types.UID(sliceName)
		for _, i := range ids {
			s.Endpoints = append(s.Endpoints, *ep(i))
		}
		return s
	}
	// Nothing changed: no writes.
	p := reconcile(svc, []*discovery.EndpointSlice{existing("a", 1, 2), existing("b", 3)}, want(1, 2, 3), 3, time.Time{})
	if len(p.create)+len(p.update)+len(p.remove) != 0 {
		t.Fatalf("no-op sync writes: %+v", p)
	}
	// One endpoint goes from "a", one new one arrives: "a" is rewritten
	// anyway and takes it; "b" is left alone.
	p = reconcile(svc, []*discovery.EndpointSlice{existing("a", 1, 2), existing("b", 3)}, want(1, 3, 4), 3, time.Time{})
	if len(p.create) != 0 || len(p.remove) != 0 || len(p.update) != 1 || p.update[0].Name != "a" || len(p.update[0].Endpoints) != 2 {
		t.Fatalf("plan: create %d update %d remove %d", len(p.create), len(p.update), len(p.remove))
	}
	// New endpoints only: they go into the unchanged slice that fits.
	p = reconcile(svc, []*discovery.EndpointSlice{existing("a", 1, 2), existing("b", 3)}, want(1, 2, 3, 4, 5), 3, time.Time{})
	if len(p.create) != 0 || len(p.update) != 1 || p.update[0].Name != "b" || len(p.update[0].Endpoints) != 3 {
		t.Fatalf("plan: create %d update %d remove %d", len(p.create), len(p.update), len(p.remove))
	}
	// Everything gone: the last slice becomes the placeholder (an update,
	// not a delete and a create).
	p = reconcile(svc, []*discovery.EndpointSlice{existing("a", 1)}, desiredState{}, 3, time.Time{})
	if len(p.create) != 0 || len(p.remove) != 0 || len(p.update) != 1 || len(p.update[0].Endpoints) != 0 || len(p.update[0].Ports) != 0 {
		t.Fatalf("plan: create %d update %d remove %d", len(p.create), len(p.update), len(p.remove))
	}
}
