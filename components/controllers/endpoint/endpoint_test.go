package endpoint

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// pod makes a pod on node n1 (no kubelet runs: the test plays it).
func pod(name string, lbls map[string]string, ports ...v1.ContainerPort) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Spec: v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "c", Image: "busybox", Ports: ports}}}}
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
	p.Status.PodIPs = nil
	if ip != "" {
		p.Status.PodIPs = []v1.PodIP{{IP: ip}}
	}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// summary renders subsets as "ready=[ip/pod...] notready=[...] ports=[name:port...]" per subset, sorted.
func summary(subsets []v1.EndpointSubset) string {
	var out []string
	for _, s := range subsets {
		addrs := func(as []v1.EndpointAddress) string {
			var l []string
			for _, a := range as {
				l = append(l, a.IP+"/"+a.TargetRef.Name)
			}
			return strings.Join(l, ",")
		}
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d", p.Name, p.Port))
		}
		sort.Strings(ports)
		out = append(out, fmt.Sprintf("ready=[%s] notready=[%s] ports=[%s]", addrs(s.Addresses), addrs(s.NotReadyAddresses), strings.Join(ports, ",")))
	}
	sort.Strings(out)
	return strings.Join(out, " | ")
}

// waitEndpoints polls until the service's Endpoints summarise to want.
func waitEndpoints(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name, want string) *v1.Endpoints {
	t.Helper()
	var last string
	for {
		ep, err := cs.CoreV1().Endpoints(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if last = summary(ep.Subsets); last == want {
				return ep
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("endpoints %s/%s: got %q, want %q", ns, name, last, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestEndpoints(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	testcluster.RunControllers(t, cc, New)
	cs := c.Client
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ns = "default"
	pods := cs.CoreV1().Pods(ns)

	http := v1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: v1.ProtocolTCP}
	for _, p := range []*v1.Pod{
		pod("web-1", map[string]string{"app": "web"}, http),
		pod("web-2", map[string]string{"app": "web"}, http),
		pod("web-noip", map[string]string{"app": "web"}, http),
		pod("web-alt", map[string]string{"app": "web"}, v1.ContainerPort{Name: "http", ContainerPort: 8081, Protocol: v1.ProtocolTCP}),
		pod("other-1", map[string]string{"app": "other"}, http),
	} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setStatus(t, ctx, cs, ns, "web-1", "10.1.0.1", true)
	setStatus(t, ctx, cs, ns, "web-2", "10.1.0.2", false)
	setStatus(t, ctx, cs, ns, "web-noip", "", true)
	setStatus(t, ctx, cs, ns, "other-1", "10.1.0.9", true)

	svc, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"tier": "front"}},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []v1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9091)},
		}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Ready and not-ready pods share a subset (same ports); the pod
	// without an IP is left out.
	ep := waitEndpoints(t, ctx, cs, ns, "web", "ready=[10.1.0.1/web-1] notready=[10.1.0.2/web-2] ports=[http:8080,metrics:9091]")
	a := ep.Subsets[0].Addresses[0]
	if a.NodeName == nil || *a.NodeName != "n1" || a.TargetRef.Kind != "Pod" || a.TargetRef.Namespace != ns || a.TargetRef.UID == "" {
		t.Fatalf("address: %+v %+v", a, a.TargetRef)
	}
	if ep.Labels["tier"] != "front" || ep.Labels[ManagedByLabel] != ControllerName {
		t.Fatalf("labels: %v", ep.Labels)
	}
	if _, err := time.Parse(time.RFC3339Nano, ep.Annotations[v1.EndpointsLastChangeTriggerTime]); err != nil {
		t.Fatalf("trigger-time annotation: %v (%v)", ep.Annotations, err)
	}

	// The pod whose "http" port is another number splits the subsets
	// (one per distinct set of addresses) once it has an IP; readiness
	// changes move addresses.
	setStatus(t, ctx, cs, ns, "web-alt", "10.1.0.3", true)
	setStatus(t, ctx, cs, ns, "web-2", "10.1.0.2", true)
	waitEndpoints(t, ctx, cs, ns, "web", "ready=[10.1.0.1/web-1,10.1.0.2/web-2,10.1.0.3/web-alt] notready=[] ports=[metrics:9091] | ready=[10.1.0.1/web-1,10.1.0.2/web-2] notready=[] ports=[http:8080] | ready=[10.1.0.3/web-alt] notready=[] ports=[http:8081]")
	setStatus(t, ctx, cs, ns, "web-1", "10.1.0.1", false)
	waitEndpoints(t, ctx, cs, ns, "web", "ready=[10.1.0.2/web-2,10.1.0.3/web-alt] notready=[10.1.0.1/web-1] ports=[metrics:9091] | ready=[10.1.0.2/web-2] notready=[10.1.0.1/web-1] ports=[http:8080] | ready=[10.1.0.3/web-alt] notready=[] ports=[http:8081]")

	// A terminating pod (bound, no kubelet to finish it) drops out...
	if err := pods.Delete(ctx, "web-alt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, ctx, cs, ns, "web", "ready=[10.1.0.2/web-2] notready=[10.1.0.1/web-1] ports=[http:8080,metrics:9091]")
	// ...unless the service publishes not-ready addresses: then every
	// pod with an IP is ready, terminating or not.
	svc, _ = cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	svc.Spec.PublishNotReadyAddresses = true
	if svc, err = cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, ctx, cs, ns, "web", "ready=[10.1.0.1/web-1,10.1.0.2/web-2,10.1.0.3/web-alt] notready=[] ports=[metrics:9091] | ready=[10.1.0.1/web-1,10.1.0.2/web-2] notready=[] ports=[http:8080] | ready=[10.1.0.3/web-alt] notready=[] ports=[http:8081]")

	// A selector change follows the new pods; a label change on a pod
	// moves it in.
	svc.Spec.Selector = map[string]string{"app": "other"}
	svc.Spec.PublishNotReadyAddresses = false
	if _, err = cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, ctx, cs, ns, "web", "ready=[10.1.0.9/other-1] notready=[] ports=[http:8080,metrics:9091]")
	if _, err := pods.Patch(ctx, "web-2", types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"other"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, ctx, cs, ns, "web", "ready=[10.1.0.2/web-2,10.1.0.9/other-1] notready=[] ports=[http:8080,metrics:9091]")

	// Endpoints deleted by hand come back.
	if err := cs.CoreV1().Endpoints(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, ctx, cs, ns, "web", "ready=[10.1.0.2/web-2,10.1.0.9/other-1] notready=[] ports=[http:8080,metrics:9091]")

	// A service without selector keeps its hand-made Endpoints as they are.
	manual := &v1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "external"}, Subsets: []v1.EndpointSubset{{
		Addresses: []v1.EndpointAddress{{IP: "192.0.2.10"}}, Ports: []v1.EndpointPort{{Name: "db", Port: 5432, Protocol: v1.ProtocolTCP}}}}}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "external"},
		Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "db", Port: 5432}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if manual, err = cs.CoreV1().Endpoints(ns).Create(ctx, manual, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Headless without ports: addresses without ports. Once it shows,
	// the controller has long seen the selector-less service too.
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "headless"},
		Spec: v1.ServiceSpec{ClusterIP: v1.ClusterIPNone, Selector: map[string]string{"app": "other"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hl := waitEndpoints(t, ctx, cs, ns, "headless", "ready=[10.1.0.2/web-2,10.1.0.9/other-1] notready=[] ports=[]")
	if _, ok := hl.Labels[v1.IsHeadlessService]; !ok {
		t.Fatalf("headless label missing: %v", hl.Labels)
	}
	if got, err := cs.CoreV1().Endpoints(ns).Get(ctx, "external", metav1.GetOptions{}); err != nil || got.ResourceVersion != manual.ResourceVersion {
		t.Fatalf("hand-made endpoints touched: %v %+v", err, got)
	}

	// Deleting the service deletes its endpoints.
	if err := cs.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := cs.CoreV1().Endpoints(ns).Get(ctx, "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("endpoints of a deleted service still there: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRepackSubsets(t *testing.T) {
	ref := func(uid string) *v1.ObjectReference { return &v1.ObjectReference{Kind: "Pod", UID: types.UID(uid)} }
	p80 := v1.EndpointPort{Name: "a", Port: 80}
	p81 := v1.EndpointPort{Name: "b", Port: 81}
	got := RepackSubsets([]v1.EndpointSubset{
		{Addresses: []v1.EndpointAddress{{IP: "1.1.1.2", TargetRef: ref("2")}}, Ports: []v1.EndpointPort{p80}},
		{Addresses: []v1.EndpointAddress{{IP: "1.1.1.1", TargetRef: ref("1")}}, Ports: []v1.EndpointPort{p80}},
		{Addresses: []v1.EndpointAddress{{IP: "1.1.1.1", TargetRef: ref("1")}}, Ports: []v1.EndpointPort{p81}},
		{NotReadyAddresses: []v1.EndpointAddress{{IP: "1.1.1.2", TargetRef: ref("2")}}, Ports: []v1.EndpointPort{p81}},
	})
	// 1.1.1.1 serves both ports ready; 1.1.1.2 is ready on 80 but not on
	// 81, so port 80 and port 81 have different address sets.
	want := map[string]string{
		"a:80": "ready=[1.1.1.1 1.1.1.2] notready=[]",
		"b:81": "ready=[1.1.1.1] notready=[1.1.1.2]",
	}
	if len(got) != 2 {
		t.Fatalf("got %d subsets: %+v", len(got), got)
	}
	for _, s := range got {
		if len(s.Ports) != 1 {
			t.Fatalf("subset %+v", s)
		}
		ips := func(as []v1.EndpointAddress) []string {
			var l []string
			for _, a := range as {
				l = append(l, a.IP)
			}
			return l
		}
		key := fmt.Sprintf("%s:%d", s.Ports[0].Name, s.Ports[0].Port)
		if g := fmt.Sprintf("ready=%v notready=%v", ips(s.Addresses), ips(s.NotReadyAddresses)); g != want[key] {
			t.Fatalf("%s: %s, want %s", key, g, want[key])
		}
	}
	// Same input in another order packs to the same result.
	again := RepackSubsets([]v1.EndpointSubset{
		{NotReadyAddresses: []v1.EndpointAddress{{IP: "1.1.1.2", TargetRef: ref("2")}}, Ports: []v1.EndpointPort{p81}},
		{Addresses: []v1.EndpointAddress{{IP: "1.1.1.1", TargetRef: ref("1")}}, Ports: []v1.EndpointPort{p81, p80}},
		{Addresses: []v1.EndpointAddress{{IP: "1.1.1.2", TargetRef: ref("2")}}, Ports: []v1.EndpointPort{p80}},
	})
	if !reflect.DeepEqual(got, again) {
		t.Fatalf("not canonical:\n%+v\n%+v", got, again)
	}
}
