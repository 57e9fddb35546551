package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeSource is an in-memory RBACSource.
type fakeSource struct {
	clusterRoles        map[string]*rbacv1.ClusterRole
	clusterRoleBindings []rbacv1.ClusterRoleBinding
	roles               map[string]*rbacv1.Role // "ns/name"
	roleBindings        []rbacv1.RoleBinding
	listErr             error
}

var _ RBACSource = (*fakeSource)(nil)

func newFakeSource() *fakeSource {
	return &fakeSource{clusterRoles: map[string]*rbacv1.ClusterRole{}, roles: map[string]*rbacv1.Role{}}
}

func (f *fakeSource) ListClusterRoleBindings() ([]rbacv1.ClusterRoleBinding, error) {
	return f.clusterRoleBindings, f.listErr
}

func (f *fakeSource) GetClusterRole(name string) (*rbacv1.ClusterRole, error) {
	if r, ok := f.clusterRoles[name]; ok {
		return r, nil
	}
	return nil, fmt.Errorf("clusterrole.rbac.authorization.k8s.io %q not found", name)
}

func (f *fakeSource) ListRoleBindings(namespace string) ([]rbacv1.RoleBinding, error) {
	var out []rbacv1.RoleBinding
	for _, b := range f.roleBindings {
		if b.Namespace == namespace {
			out = append(out, b)
		}
	}
	return out, nil
}

func (f *fakeSource) GetRole(namespace, name string) (*rbacv1.Role, error) {
	if r, ok := f.roles[namespace+"/"+name]; ok {
		return r, nil
	}
	return nil, fmt.Errorf("role.rbac.authorization.k8s.io %q not found", name)
}

func (f *fakeSource) addClusterRole(name string, rules ...rbacv1.PolicyRule) {
	f.clusterRoles[name] = &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
}

func (f *fakeSource) addRole(ns, name string, rules ...rbacv1.PolicyRule) {
	f.roles[ns+"/"+name] = &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules}
}

func (f *fakeSource) bindCluster(name, role string, subjects ...rbacv1.Subject) {
	f.clusterRoleBindings = append(f.clusterRoleBindings, rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	})
}

func (f *fakeSource) bind(ns, name, kind, role string, subjects ...rbacv1.Subject) {
	f.roleBindings = append(f.roleBindings, rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacGroup, Kind: kind, Name: role},
		Subjects:   subjects,
	})
}

func userSubj(name string) rbacv1.Subject { return rbacv1.Subject{Kind: rbacv1.UserKind, Name: name} }
func groupSubj(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, Name: name}
}
func saSubj(ns, name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
}

func res(u *User, verb, ns, group, resource, sub, name string) Attributes {
	return Attributes{User: u, Verb: verb, Namespace: ns, APIGroup: group, Resource: resource, Subresource: sub, Name: name, ResourceRequest: true}
}

func path(u *User, verb, p string) Attributes {
	return Attributes{User: u, Verb: verb, Path: p}
}

type authzCase struct {
	name   string
	a      Attributes
	wallow bool
}

func runAuthz(t *testing.T, r *RBAC, cases []authzCase) {
	t.Helper()
	for _, c := range cases {
		allowed, reason, err := r.Authorize(c.a)
		if err != nil {
			t.Errorf("%s: err %v", c.name, err)
			continue
		}
		if allowed != c.wallow {
			t.Errorf("%s: allowed=%v (reason %q), want %v", c.name, allowed, reason, c.wallow)
		}
	}
}

func TestRBACMastersAllowedEverything(t *testing.T) {
	r := NewRBAC(newFakeSource()) // no roles at all
	root := &User{Name: "root", Groups: []string{SystemMasters, AllAuthenticated}}
	runAuthz(t, r, []authzCase{
		{"delete nodes", res(root, "delete", "", "", "nodes", "", "n1"), true},
		{"escalate", res(root, "escalate", "", rbacGroup, "clusterroles", "", ""), true},
		{"path", path(root, "post", "/anything"), true},
	})
	if _, _, err := r.Authorize(Attributes{Verb: "get", Path: "/"}); err == nil {
		t.Fatal("Authorize without user: want error")
	}
}

func TestRBACRoleBindingIsNamespaced(t *testing.T) {
	f := newFakeSource()
	f.addRole("dev", "pod-reader", rule(readVerbs, groups(""), "pods"))
	f.bind("dev", "alice-reads", "Role", "pod-reader", userSubj("alice"))
	// A RoleBinding to a ClusterRole grants it only in the binding's namespace.
	f.addClusterRole("cm-editor", rule(readWriteVerbs, groups(""), "configmaps"))
	f.bind("dev", "alice-cm", "ClusterRole", "cm-editor", userSubj("alice"))
	r := NewRBAC(f)
	alice := &User{Name: "alice", Groups: []string{AllAuthenticated}}
	bob := &User{Name: "bob", Groups: []string{AllAuthenticated}}
	runAuthz(t, r, []authzCase{
		{"list pods in dev", res(alice, "list", "dev", "", "pods", "", ""), true},
		{"get pod in dev", res(alice, "get", "dev", "", "pods", "", "p"), true},
		{"create pod in dev", res(alice, "create", "dev", "", "pods", "", ""), false},
		{"list pods in default", res(alice, "list", "default", "", "pods", "", ""), false},
		{"list pods all namespaces", res(alice, "list", "", "", "pods", "", ""), false},
		{"update cm in dev", res(alice, "update", "dev", "", "configmaps", "", "c"), true},
		{"update cm in prod", res(alice, "update", "prod", "", "configmaps", "", "c"), false},
		{"apps group differs", res(alice, "list", "dev", "apps", "pods", "", ""), false},
		{"bob", res(bob, "list", "dev", "", "pods", "", ""), false},
	})
	_, reason, _ := r.Authorize(res(alice, "list", "dev", "", "pods", "", ""))
	if w := `RBAC: allowed by RoleBinding "alice-reads/dev" of Role "pod-reader" to User "alice"`; reason != w {
		t.Fatalf("reason %q, want %q", reason, w)
	}
}

func TestRBACResourceNamesSubresourcesWildcards(t *testing.T) {
	f := newFakeSource()
	f.addClusterRole("mixed",
		named(rule([]string{"get", "update"}, groups(""), "configmaps"), "app-config"),
		rule([]string{"get"}, groups(""), "pods/log"),
		rule([]string{"update"}, groups("apps"), "*/scale"),
		rule([]string{"*"}, groups("batch"), "*"),
		rule([]string{"list"}, groups("*"), "leases"),
	)
	f.bindCluster("carol-mixed", "mixed", userSubj("carol"))
	r := NewRBAC(f)
	carol := &User{Name: "carol"}
	runAuthz(t, r, []authzCase{
		{"named cm", res(carol, "get", "ns", "", "configmaps", "", "app-config"), true},
		{"other cm", res(carol, "get", "ns", "", "configmaps", "", "other"), false},
		{"list cms (no name)", res(carol, "list", "ns", "", "configmaps", "", ""), false},
		{"pods/log", res(carol, "get", "ns", "", "pods", "log", "p"), true},
		{"pods itself", res(carol, "get", "ns", "", "pods", "", "p"), false},
		{"pods/exec", res(carol, "get", "ns", "", "pods", "exec", "p"), false},
		{"deployments/scale", res(carol, "update", "ns", "apps", "deployments", "scale", "d"), true},
		{"deployments/status", res(carol, "update", "ns", "apps", "deployments", "status", "d"), false},
		{"deployments", res(carol, "update", "ns", "apps", "deployments", "", "d"), false},
		{"batch anything", res(carol, "deletecollection", "ns", "batch", "jobs", "", ""), true},
		{"batch subresource", res(carol, "patch", "ns", "batch", "jobs", "status", "j"), true},
		{"leases in any group", res(carol, "list", "", "coordination.k8s.io", "leases", "", ""), true},
		{"leases watch", res(carol, "watch", "", "coordination.k8s.io", "leases", "", ""), false},
	})
}

func TestRBACNonResourceURLs(t *testing.T) {
	f := newFakeSource()
	f.addClusterRole("urls",
		urlRule([]string{"get"}, "/healthz", "/healthz/*", "/apis/*"),
		urlRule([]string{"*"}, "/debug"),
	)
	f.bindCluster("dave-urls", "urls", userSubj("dave"))
	r := NewRBAC(f)
	dave := &User{Name: "dave"}
	runAuthz(t, r, []authzCase{
		{"/healthz", path(dave, "get", "/healthz"), true},
		{"/healthz/etcd", path(dave, "get", "/healthz/etcd"), true},
		{"/healthzz", path(dave, "get", "/healthzz"), false},
		{"/apis/apps/v1", path(dave, "get", "/apis/apps/v1"), true},
		{"/apis", path(dave, "get", "/apis"), false},
		{"post /healthz", path(dave, "post", "/healthz"), false},
		{"/debug any verb", path(dave, "put", "/debug"), true},
		{"/debug/x", path(dave, "get", "/debug/x"), false},
		// A resource request never matches URL rules.
		{"resource", res(dave, "get", "", "", "healthz", "", ""), false},
	})
}

func TestRBACServiceAccounts(t *testing.T) {
	f := newFakeSource()
	f.addClusterRole("pod-reader", rule(readVerbs, groups(""), "pods"))
	f.addClusterRole("cm-reader", rule(readVerbs, groups(""), "configmaps"))
	f.addClusterRole("secret-reader", rule(readVerbs, groups(""), "secrets"))
	// Namespace left empty in a RoleBinding means the binding's namespace.
	f.bind("ci", "builder-pods", "ClusterRole", "pod-reader", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "builder"})
	f.bind("ci", "ns-sas-cms", "ClusterRole", "cm-reader", groupSubj(ServiceAccountGroupPrefix+"ci"))
	f.bindCluster("all-sas-secrets", "secret-reader", groupSubj(AllServiceAccountsGroup))
	// A ServiceAccount subject without namespace in a ClusterRoleBinding matches nobody.
	f.bindCluster("broken", "pod-reader", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "builder"})
	f.bindCluster("deployer-pods", "pod-reader", saSubj("prod", "deployer"))
	r := NewRBAC(f)

	builder := ServiceAccountUser("ci", "builder", "uid-1")
	other := ServiceAccountUser("prod", "builder", "uid-2")
	deployer := ServiceAccountUser("prod", "deployer", "uid-3")
	runAuthz(t, r, []authzCase{
		{"builder pods in ci", res(builder, "list", "ci", "", "pods", "", ""), true},
		{"builder pods in prod", res(builder, "list", "prod", "", "pods", "", ""), false},
		{"same name other ns", res(other, "list", "ci", "", "pods", "", ""), false},
		{"ns group cms", res(builder, "get", "ci", "", "configmaps", "", "c"), true},
		{"ns group cms other ns", res(other, "get", "ci", "", "configmaps", "", "c"), false},
		{"all sas secrets", res(other, "get", "x", "", "secrets", "", "s"), true},
		{"cluster-bound sa", res(deployer, "list", "", "", "pods", "", ""), true},
		{"user with sa-like name but not that sa", res(&User{Name: "builder"}, "list", "ci", "", "pods", "", ""), false},
	})
	_, reason, _ := r.Authorize(res(builder, "list", "ci", "", "pods", "", ""))
	if w := `RBAC: allowed by RoleBinding "builder-pods/ci" of ClusterRole "pod-reader" to ServiceAccount "builder/ci"`; reason != w {
		t.Fatalf("reason %q, want %q", reason, w)
	}
	if ns, name, ok := SplitServiceAccountUsername(builder.Name); !ok || ns != "ci" || name != "builder" {
		t.Fatalf("SplitServiceAccountUsername(%q) = %q %q %v", builder.Name, ns, name, ok)
	}
	for _, bad := range []string{"builder", "system:serviceaccount:ci", "system:serviceaccount::b", "system:serviceaccount:a:b:c"} {
		if _, _, ok := SplitServiceAccountUsername(bad); ok {
			t.Fatalf("SplitServiceAccountUsername(%q) ok", bad)
		}
	}
}

func TestRBACResolutionErrors(t *testing.T) {
	f := newFakeSource()
	f.addClusterRole("pod-reader", rule(readVerbs, groups(""), "pods"))
	f.bindCluster("dangling", "no-such-role", userSubj("erin"))
	f.bindCluster("works", "pod-reader", userSubj("erin"))
	r := NewRBAC(f)
	erin := &User{Name: "erin"}
	// A dangling binding does not stop another binding from allowing.
	allowed, _, err := r.Authorize(res(erin, "list", "", "", "pods", "", ""))
	if !allowed || err != nil {
		t.Fatalf("allowed=%v err=%v", allowed, err)
	}
	// When nothing allows, the errors land in the reason, not in err.
	allowed, reason, err := r.Authorize(res(erin, "list", "", "", "secrets", "", ""))
	if allowed || err != nil {
		t.Fatalf("allowed=%v err=%v", allowed, err)
	}
	if w := `RBAC: clusterrole.rbac.authorization.k8s.io "no-such-role" not found`; reason != w {
		t.Fatalf("reason %q, want %q", reason, w)
	}
	f.listErr = errors.New("cache not synced")
	_, reason, _ = r.Authorize(res(erin, "list", "", "", "secrets", "", ""))
	if !strings.Contains(reason, "cache not synced") {
		t.Fatalf("reason %q does not carry the list error", reason)
	}
	// A ClusterRoleBinding cannot reference a Role.
	f2 := newFakeSource()
	f2.clusterRoleBindings = []rbacv1.ClusterRoleBinding{{
		ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		RoleRef:    rbacv1.RoleRef{Kind: "Role", Name: "r"},
		Subjects:   []rbacv1.Subject{userSubj("erin")},
	}}
	if allowed, reason, _ := NewRBAC(f2).Authorize(res(erin, "get", "", "", "pods", "", "p")); allowed || !strings.Contains(reason, "references Role") {
		t.Fatalf("allowed=%v reason=%q", allowed, reason)
	}
}
