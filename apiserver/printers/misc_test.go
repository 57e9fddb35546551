package printers

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLeaseRows(t *testing.T) {
	held := &coordinationv1.Lease{ObjectMeta: objMeta("kube-scheduler"),
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("cp-1_3b4f2c1e-9d7a-4c2b-8e6f-1a2b3c4d5e6f"), LeaseDurationSeconds: ptr(int32(15)),
			RenewTime: &metav1.MicroTime{Time: now.Add(-2 * time.Second)}}}
	free := &coordinationv1.Lease{ObjectMeta: objMeta("released")}
	checkRows(t, "Lease", []rowCase{
		{"held", held, []interface{}{"kube-scheduler", "cp-1_3b4f2c1e-9d7a-4c2b-8e6f-1a2b3c4d5e6f", "10d"}},
		{"no holder", free, []interface{}{"released", "", "10d"}},
	})
}

func TestEndpointSliceRows(t *testing.T) {
	port := func(name string, p int32) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: ptr(name), Port: ptr(p), Protocol: ptr(corev1.ProtocolTCP)}
	}
	dns := &discoveryv1.EndpointSlice{ObjectMeta: objMeta("kube-dns-7xk2p"), AddressType: discoveryv1.AddressTypeIPv4,
		Ports:     []discoveryv1.EndpointPort{port("dns-tcp", 53), port("dns", 53), port("metrics", 9153)},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.2"}}, {Addresses: []string{"10.244.0.3"}}}}
	many := &discoveryv1.EndpointSlice{ObjectMeta: objMeta("web-abcde"), AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{port("a", 80), port("b", 81), port("c", 82), port("d", 83), {Name: ptr("named")}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"10.0.0.2"}},
			{Addresses: []string{"10.0.0.3"}}, {Addresses: []string{"10.0.0.4"}}, {Addresses: []string{"10.0.0.5"}}}}
	wildcard := &discoveryv1.EndpointSlice{ObjectMeta: objMeta("v6-xyz"), AddressType: discoveryv1.AddressTypeIPv6,
		Ports: []discoveryv1.EndpointPort{{Name: ptr("http")}, {}}}
	empty := &discoveryv1.EndpointSlice{ObjectMeta: objMeta("empty"), AddressType: discoveryv1.AddressTypeIPv4}
	checkRows(t, "EndpointSlice", []rowCase{
		{"kube-dns", dns, []interface{}{"kube-dns-7xk2p", "IPv4", "53,53,9153", "10.244.0.2,10.244.0.3", "10d"}},
		{"more than three", many, []interface{}{"web-abcde", "IPv4", "80,81,82 + 2 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...", "10d"}},
		{"named and wildcard ports", wildcard, []interface{}{"v6-xyz", "IPv6", "http,*", "<unset>", "10d"}},
		{"empty", empty, []interface{}{"empty", "IPv4", "<unset>", "<unset>", "10d"}},
	})
}

func TestRBACRows(t *testing.T) {
	created := metav1.Date(2025, 1, 5, 12, 0, 0, 0, time.UTC)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "default", CreationTimestamp: created},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}}
	checkRows(t, "Role", []rowCase{{"role", role, []interface{}{"pod-reader", "2025-01-05T12:00:00Z"}}})
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cluster-admin", CreationTimestamp: created}}
	checkRows(t, "ClusterRole", []rowCase{{"cluster role", cr, []interface{}{"cluster-admin", "2025-01-05T12:00:00Z"}}})

	rb := &rbacv1.RoleBinding{ObjectMeta: objMeta("read-pods"),
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "jane"},
			{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: "kube-system"},
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "bob"},
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "devs"},
			{Kind: rbacv1.ServiceAccountKind, Name: "builder", Namespace: "ci"},
		}}
	toClusterRole := &rbacv1.RoleBinding{ObjectMeta: objMeta("view"), RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"}}
	checkRows(t, "RoleBinding", []rowCase{
		{"mixed subjects", rb, []interface{}{"read-pods", "Role/pod-reader", "10d", "jane, bob", "devs", "kube-system/default, ci/builder"}},
		{"no subjects", toClusterRole, []interface{}{"view", "ClusterRole/view", "10d", "", "", ""}},
	})

	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "cluster-admin", CreationTimestamp: ago(10 * day)},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:masters"}}}
	checkRows(t, "ClusterRoleBinding", []rowCase{
		{"cluster-admin", crb, []interface{}{"cluster-admin", "ClusterRole/cluster-admin", "10d", "", "system:masters", ""}},
	})
}
