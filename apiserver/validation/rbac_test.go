package validation

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestRBAC(t *testing.T) {
	objs := validObjects()
	rb := objs["RoleBinding"].(*rbacv1.RoleBinding)
	Default(rb)
	if rb.RoleRef.APIGroup != rbacv1.GroupName || rb.Subjects[0].APIGroup != rbacv1.GroupName || rb.Subjects[1].APIGroup != "" {
		t.Errorf("rbac defaults %+v", rb)
	}

	role := objs["Role"].(*rbacv1.Role)
	role.Rules = append(role.Rules, rbacv1.PolicyRule{Resources: []string{"pods"}}, rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}})
	expectErrors(t, ValidateCreate(role),
		want{"rules[1].verbs", field.ErrorTypeRequired, "verbs must contain at least one value"},
		want{"rules[1].apiGroups", field.ErrorTypeRequired, "resource rules must supply at least one api group"},
		want{"rules[2].nonResourceURLs", field.ErrorTypeInvalid, "namespaced rules cannot apply to non-resource URLs"})

	cr := objs["ClusterRole"].(*rbacv1.ClusterRole)
	cr.Name = "a/b"
	cr.AggregationRule = &rbacv1.AggregationRule{}
	expectErrors(t, ValidateCreate(cr),
		want{"metadata.name", field.ErrorTypeInvalid, "may not contain '/'"},
		want{"aggregationRule.clusterRoleSelectors", field.ErrorTypeRequired, ""})

	bad := validObjects()["RoleBinding"].(*rbacv1.RoleBinding)
	bad.RoleRef = rbacv1.RoleRef{APIGroup: "example.com", Kind: "Thing"}
	bad.Subjects = []rbacv1.Subject{{Kind: "Robot", Name: "r2"}, {Kind: "ServiceAccount", APIGroup: "rbac.authorization.k8s.io", Name: "x"}}
	Default(bad)
	expectErrors(t, ValidateCreate(bad),
		want{"roleRef.apiGroup", field.ErrorTypeNotSupported, ""},
		want{"roleRef.kind", field.ErrorTypeNotSupported, `supported values: "Role", "ClusterRole"`},
		want{"roleRef.name", field.ErrorTypeRequired, ""},
		want{"subjects[0].kind", field.ErrorTypeNotSupported, `supported values: "ServiceAccount", "User", "Group"`},
		want{"subjects[1].apiGroup", field.ErrorTypeNotSupported, ""})

	crb := objs["ClusterRoleBinding"].(*rbacv1.ClusterRoleBinding)
	crb.RoleRef.Kind = "Role"
	crb.Subjects[1].Namespace = ""
	Default(crb)
	expectErrors(t, ValidateCreate(crb),
		want{"roleRef.kind", field.ErrorTypeNotSupported, `supported values: "ClusterRole"`},
		want{"subjects[1].namespace", field.ErrorTypeRequired, ""})

	// roleRef is immutable, subjects are not
	nrb := rb.DeepCopy()
	nrb.Subjects = nrb.Subjects[:1]
	expectErrors(t, ValidateUpdate(nrb, rb))
	nrb.RoleRef.Name = "writer"
	expectErrors(t, ValidateUpdate(nrb, rb), want{"roleRef", field.ErrorTypeInvalid, "cannot change roleRef"})
	okcrb := validObjects()["ClusterRoleBinding"].(*rbacv1.ClusterRoleBinding)
	Default(okcrb)
	ncrb := okcrb.DeepCopy()
	ncrb.RoleRef.Name = "other"
	expectErrors(t, ValidateUpdate(ncrb, okcrb), want{"roleRef", field.ErrorTypeInvalid, "cannot change roleRef"})
}

func TestLease(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(l *coordinationv1.Lease)
		want   want
	}{
		{"duration", func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = ptrTo(int32(0)) }, want{"spec.leaseDurationSeconds", field.ErrorTypeInvalid, "must be greater than 0"}},
		{"transitions", func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptrTo(int32(-1)) }, want{"spec.leaseTransitions", field.ErrorTypeInvalid, "must be greater than or equal to 0"}},
		{"strategy", func(l *coordinationv1.Lease) {
			l.Spec.Strategy = ptrTo(coordinationv1.CoordinatedLeaseStrategy("Youngest"))
		}, want{"spec.strategy", field.ErrorTypeNotSupported, ""}},
		{"preferredHolder", func(l *coordinationv1.Lease) { l.Spec.PreferredHolder = ptrTo("m2") }, want{"spec.preferredHolder", field.ErrorTypeForbidden, "may only be specified if `strategy` is defined"}},
		{"name", func(l *coordinationv1.Lease) { l.Name = "Kube_Scheduler" }, want{"metadata.name", field.ErrorTypeInvalid, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := validObjects()["Lease"].(*coordinationv1.Lease)
			c.mutate(l)
			Default(l)
			expectErrors(t, ValidateCreate(l), c.want)
		})
	}
	old := validObjects()["Lease"].(*coordinationv1.Lease)
	l := old.DeepCopy()
	l.Spec.HolderIdentity = ptrTo("master-2")
	l.Spec.LeaseTransitions = ptrTo(int32(1))
	expectErrors(t, ValidateUpdate(l, old))
}

func TestEndpointSlice(t *testing.T) {
	es := validObjects()["EndpointSlice"].(*discoveryv1.EndpointSlice)
	es.Ports = append(es.Ports, discoveryv1.EndpointPort{})
	Default(es)
	if *es.Ports[0].Protocol != corev1.ProtocolTCP || es.Ports[1].Name == nil {
		t.Errorf("endpointslice defaults %+v", es.Ports)
	}
	expectErrors(t, ValidateCreate(es))

	cases := []struct {
		name   string
		mutate func(es *discoveryv1.EndpointSlice)
		want   want
	}{
		{"no addressType", func(es *discoveryv1.EndpointSlice) { es.AddressType = "" }, want{"addressType", field.ErrorTypeRequired, ""}},
		{"bad addressType", func(es *discoveryv1.EndpointSlice) { es.AddressType = "IPX" }, want{"addressType", field.ErrorTypeNotSupported, `supported values: "FQDN", "IPv4", "IPv6"`}},
		{"wrong family", func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses = []string{"fd00::1"} }, want{"endpoints[0].addresses[0]", field.ErrorTypeInvalid, "must be a valid IPv4 address"}},
		{"no address", func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses = nil }, want{"endpoints[0].addresses", field.ErrorTypeRequired, "must contain at least 1 address"}},
		{"duplicate port name", func(es *discoveryv1.EndpointSlice) {
			es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptrTo("http"), Port: ptrTo(int32(81))})
		}, want{"ports[1].name", field.ErrorTypeDuplicate, ""}},
		{"bad protocol", func(es *discoveryv1.EndpointSlice) { es.Ports[0].Protocol = ptrTo(corev1.Protocol("IP")) }, want{"ports[0].protocol", field.ErrorTypeNotSupported, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			es := validObjects()["EndpointSlice"].(*discoveryv1.EndpointSlice)
			c.mutate(es)
			Default(es)
			expectErrors(t, ValidateCreate(es), c.want)
		})
	}
	old := validObjects()["EndpointSlice"].(*discoveryv1.EndpointSlice)
	Default(old)
	n := old.DeepCopy()
	n.AddressType = discoveryv1.AddressTypeFQDN
	n.Endpoints[0].Addresses = []string{"web.example.com"}
	expectErrors(t, ValidateUpdate(n, old), want{"addressType", field.ErrorTypeInvalid, "field is immutable"})
}
