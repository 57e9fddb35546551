package printers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNamespaceRows(t *testing.T) {
	active := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", CreationTimestamp: ago(10 * day)}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	deleting := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "old", CreationTimestamp: ago(3*day + 5*time.Hour)}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}
	checkRows(t, "Namespace", []rowCase{
		{"active", active, []interface{}{"kube-system", "Active", "10d"}},
		{"terminating", deleting, []interface{}{"old", "Terminating", "3d5h"}},
	})
}

func TestNodeRows(t *testing.T) {
	info := corev1.NodeSystemInfo{KubeletVersion: "v1.32.2", OSImage: "Ubuntu 22.04.4 LTS", KernelVersion: "5.15.0-107-generic", ContainerRuntimeVersion: "containerd://1.7.13"}
	cp := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "cp-1", CreationTimestamp: ago(10 * day), Labels: map[string]string{
			"kubernetes.io/hostname": "cp-1", "node-role.kubernetes.io/control-plane": ""}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue},
			},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "cp-1"}, {Type: corev1.NodeInternalIP, Address: "172.18.0.2"}},
			NodeInfo:  info,
		},
	}
	cordoned := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1", CreationTimestamp: ago(2 * time.Hour)},
		Spec:       corev1.NodeSpec{Unschedulable: true},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.5"}, {Type: corev1.NodeExternalIP, Address: "203.0.113.5"}, {Type: corev1.NodeExternalIP, Address: "203.0.113.6"}},
			NodeInfo:   info,
		},
	}
	multiRole := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "old-master", CreationTimestamp: ago(400 * day), Labels: map[string]string{
			"node-role.kubernetes.io/master": "", "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "etcd", "node-role.kubernetes.io/": ""}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}},
	}
	bare := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "new", CreationTimestamp: ago(5 * time.Second)}}
	checkRows(t, "Node", []rowCase{
		{"ready control plane", cp, []interface{}{"cp-1", "Ready", "control-plane", "10d", "v1.32.2", "172.18.0.2", "<none>", "Ubuntu 22.04.4 LTS", "5.15.0-107-generic", "containerd://1.7.13"}},
		{"cordoned unknown", cordoned, []interface{}{"worker-1", "NotReady,SchedulingDisabled", "<none>", "120m", "v1.32.2", "10.0.0.5", "203.0.113.5", "Ubuntu 22.04.4 LTS", "5.15.0-107-generic", "containerd://1.7.13"}},
		{"several roles", multiRole, []interface{}{"old-master", "NotReady", "control-plane,etcd,master", "400d", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}},
		{"no status", bare, []interface{}{"new", "Unknown", "<none>", "5s", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}},
	})
}

func TestServiceRows(t *testing.T) {
	svc := func(name string, spec corev1.ServiceSpec) *corev1.Service {
		return &corev1.Service{ObjectMeta: objMeta(name), Spec: spec}
	}
	kubernetes := svc("kubernetes", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1"},
		Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}})
	dns := svc("kube-dns", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
		Selector: map[string]string{"k8s-app": "kube-dns"},
		Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP}}})
	nodePort := svc("web", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.12.34", ClusterIPs: []string{"10.96.12.34"},
		Selector: map[string]string{"app": "web", "tier": "frontend"},
		Ports:    []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}}})
	lbPending := svc("lb", corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.100.1", ClusterIPs: []string{"10.96.100.1"},
		Selector: map[string]string{"app": "lb"},
		Ports:    []corev1.ServicePort{{Port: 80, NodePort: 31234, Protocol: corev1.ProtocolTCP}, {Port: 443, NodePort: 31443, Protocol: corev1.ProtocolTCP}}})
	lbReady := lbPending.DeepCopy()
	lbReady.Name = "lb-ready"
	lbReady.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.20"}, {IP: "203.0.113.10"}}
	lbHost := lbPending.DeepCopy()
	lbHost.Name = "lb-host"
	// Server-side tables are wide: the hostname is not clipped to 16 bytes.
	lbHost.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "a1b2c3.elb.us-east-1.amazonaws.com"}}
	lbExternal := lbReady.DeepCopy()
	lbExternal.Name = "lb-ext"
	lbExternal.Spec.ExternalIPs = []string{"198.51.100.7"}
	headless := svc("db", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone},
		Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Port: 5432, Protocol: corev1.ProtocolTCP}}})
	external := svc("ext", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"})
	dualStack := svc("dual", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "fd00:10:96::1", ClusterIPs: []string{"fd00:10:96::1", "10.96.0.50"},
		ExternalIPs: []string{"192.0.2.1", "192.0.2.2"}, Ports: []corev1.ServicePort{{Port: 8080, Protocol: corev1.ProtocolSCTP}}})
	undefaulted := svc("undefaulted", corev1.ServiceSpec{ClusterIP: "10.96.7.7", Ports: []corev1.ServicePort{{Port: 8080}}})

	checkRows(t, "Service", []rowCase{
		{"kubernetes", kubernetes, []interface{}{"kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "10d", "<none>"}},
		{"kube-dns", dns, []interface{}{"kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP", "10d", "k8s-app=kube-dns"}},
		{"node port", nodePort, []interface{}{"web", "NodePort", "10.96.12.34", "<none>", "80:30080/TCP", "10d", "app=web,tier=frontend"}},
		{"load balancer pending", lbPending, []interface{}{"lb", "LoadBalancer", "10.96.100.1", "<pending>", "80:31234/TCP,443:31443/TCP", "10d", "app=lb"}},
		{"load balancer ips", lbReady, []interface{}{"lb-ready", "LoadBalancer", "10.96.100.1", "203.0.113.10,203.0.113.20", "80:31234/TCP,443:31443/TCP", "10d", "app=lb"}},
		{"load balancer hostname", lbHost, []interface{}{"lb-host", "LoadBalancer", "10.96.100.1", "a1b2c3.elb.us-east-1.amazonaws.com", "80:31234/TCP,443:31443/TCP", "10d", "app=lb"}},
		{"load balancer external ips", lbExternal, []interface{}{"lb-ext", "LoadBalancer", "10.96.100.1", "203.0.113.10,203.0.113.20,198.51.100.7", "80:31234/TCP,443:31443/TCP", "10d", "app=lb"}},
		{"headless", headless, []interface{}{"db", "ClusterIP", "None", "<none>", "5432/TCP", "10d", "app=db"}},
		{"external name", external, []interface{}{"ext", "ExternalName", "<none>", "db.example.com", "<none>", "10d", "<none>"}},
		{"dual stack external ips", dualStack, []interface{}{"dual", "ClusterIP", "fd00:10:96::1", "192.0.2.1,192.0.2.2", "8080/SCTP", "10d", "<none>"}},
		{"undefaulted", undefaulted, []interface{}{"undefaulted", "ClusterIP", "10.96.7.7", "<none>", "8080/TCP", "10d", "<none>"}},
	})
}

func TestEndpointsRows(t *testing.T) {
	addrs := []corev1.EndpointAddress{{IP: "10.244.0.2"}, {IP: "10.244.0.3"}}
	dns := &corev1.Endpoints{ObjectMeta: objMeta("kube-dns"), Subsets: []corev1.EndpointSubset{{Addresses: addrs,
		Ports: []corev1.EndpointPort{{Name: "dns-tcp", Port: 53}, {Name: "dns", Port: 53}, {Name: "metrics", Port: 9153}}}}}
	api := &corev1.Endpoints{ObjectMeta: objMeta("kubernetes"), Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "172.18.0.2"}},
		Ports: []corev1.EndpointPort{{Name: "https", Port: 6443}}}}}
	v6 := &corev1.Endpoints{ObjectMeta: objMeta("v6"), Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "fd00::5"}},
		Ports: []corev1.EndpointPort{{Port: 80}}}}}
	headless := &corev1.Endpoints{ObjectMeta: objMeta("headless"), Subsets: []corev1.EndpointSubset{{Addresses: addrs}}}
	notReady := &corev1.Endpoints{ObjectMeta: objMeta("not-ready"), Subsets: []corev1.EndpointSubset{{NotReadyAddresses: addrs, Ports: []corev1.EndpointPort{{Port: 80}}}}}
	empty := &corev1.Endpoints{ObjectMeta: objMeta("empty")}
	checkRows(t, "Endpoints", []rowCase{
		{"kube-dns", dns, []interface{}{"kube-dns", "10.244.0.2:53,10.244.0.3:53,10.244.0.2:53 + 3 more...", "10d"}},
		{"kubernetes", api, []interface{}{"kubernetes", "172.18.0.2:6443", "10d"}},
		{"ipv6", v6, []interface{}{"v6", "[fd00::5]:80", "10d"}},
		{"headless no ports", headless, []interface{}{"headless", "10.244.0.2,10.244.0.3", "10d"}},
		{"only not ready", notReady, []interface{}{"not-ready", "", "10d"}},
		{"no subsets", empty, []interface{}{"empty", "<none>", "10d"}},
	})
}

func TestEventRows(t *testing.T) {
	backoff := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web-1.181a2b3c4d5e6f70", Namespace: "default", CreationTimestamp: ago(10 * time.Minute)},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", Namespace: "default", FieldPath: "spec.containers{web}"},
		Reason:         "BackOff", Message: "Back-off restarting failed container web in pod web-1_default(1234)\n", Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "kubelet", Host: "node-1"},
		FirstTimestamp: ago(10 * time.Minute), LastTimestamp: ago(30 * time.Second), Count: 12,
	}
	scheduled := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web-1.181a2b3c00000000", Namespace: "default", CreationTimestamp: ago(3 * time.Hour)},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", Namespace: "default"},
		Reason:         "Scheduled", Message: "Successfully assigned default/web-1 to node-1", Type: corev1.EventTypeNormal,
		EventTime:           metav1.NewMicroTime(now.Add(-3 * time.Hour)),
		ReportingController: "default-scheduler", ReportingInstance: "default-scheduler-cp-1", Action: "Binding",
	}
	series := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "node-1.181a", Namespace: "default", CreationTimestamp: ago(2 * day)},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "node-1"},
		Reason:         "Rebooted", Message: "Node node-1 has been rebooted", Type: corev1.EventTypeWarning,
		EventTime:           metav1.NewMicroTime(now.Add(-2 * day)),
		Series:              &corev1.EventSeries{Count: 4, LastObservedTime: metav1.NewMicroTime(now.Add(-90 * time.Minute))},
		ReportingController: "kubelet", Source: corev1.EventSource{Host: "node-1"},
	}
	noName := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "cluster.1", Namespace: "default", CreationTimestamp: ago(time.Minute)},
		InvolvedObject: corev1.ObjectReference{Kind: "Cluster"}, Reason: "Hello", Type: corev1.EventTypeNormal,
		Source: corev1.EventSource{Component: "synod"}, LastTimestamp: ago(time.Minute), Count: 1,
	}
	checkRows(t, "Event", []rowCase{
		{"kubelet backoff", backoff, []interface{}{"30s", "Warning", "BackOff", "pod/web-1", "spec.containers{web}", "kubelet, node-1",
			"Back-off restarting failed container web in pod web-1_default(1234)", "10m", int64(12), "web-1.181a2b3c4d5e6f70"}},
		{"events.k8s.io style", scheduled, []interface{}{"3h", "Normal", "Scheduled", "pod/web-1", "", "default-scheduler, default-scheduler-cp-1",
			"Successfully assigned default/web-1 to node-1", "3h", int64(1), "web-1.181a2b3c00000000"}},
		{"series", series, []interface{}{"90m", "Warning", "Rebooted", "node/node-1", "", "kubelet, node-1",
			"Node node-1 has been rebooted", "2d", int64(4), "node-1.181a"}},
		{"no involved name", noName, []interface{}{"60s", "Normal", "Hello", "cluster", "", "synod", "", "<unknown>", int64(1), "cluster.1"}},
	})
}

func TestConfigSecretServiceAccountRows(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: objMeta("kube-root-ca.crt"), Data: map[string]string{"ca.crt": "..."}}
	cmBin := &corev1.ConfigMap{ObjectMeta: objMeta("mixed"), Data: map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"c": {0}}}
	cmEmpty := &corev1.ConfigMap{ObjectMeta: objMeta("empty")}
	checkRows(t, "ConfigMap", []rowCase{
		{"one key", cm, []interface{}{"kube-root-ca.crt", int64(1), "10d"}},
		{"data and binaryData", cmBin, []interface{}{"mixed", int64(3), "10d"}},
		{"empty", cmEmpty, []interface{}{"empty", int64(0), "10d"}},
	})

	opaque := &corev1.Secret{ObjectMeta: objMeta("db-creds"), Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}}
	token := &corev1.Secret{ObjectMeta: objMeta("build-robot-token"), Type: corev1.SecretTypeServiceAccountToken,
		Data: map[string][]byte{"ca.crt": nil, "namespace": nil, "token": nil}}
	stringData := &corev1.Secret{ObjectMeta: objMeta("string-data"), Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"a": nil}, StringData: map[string]string{"a": "x", "b": "y"}}
	checkRows(t, "Secret", []rowCase{
		{"opaque", opaque, []interface{}{"db-creds", "Opaque", int64(2), "10d"}},
		{"service account token", token, []interface{}{"build-robot-token", "kubernetes.io/service-account-token", int64(3), "10d"}},
		{"stringData merged", stringData, []interface{}{"string-data", "Opaque", int64(2), "10d"}},
	})

	sa := &corev1.ServiceAccount{ObjectMeta: objMeta("default")}
	saSecret := &corev1.ServiceAccount{ObjectMeta: objMeta("build-robot"), Secrets: []corev1.ObjectReference{{Name: "build-robot-token"}}}
	checkRows(t, "ServiceAccount", []rowCase{
		{"default", sa, []interface{}{"default", int64(0), "10d"}},
		{"with secret", saSecret, []interface{}{"build-robot", int64(1), "10d"}},
	})
}
