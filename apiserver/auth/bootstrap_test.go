package auth

import (
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
)

// defaultSource is a fakeSource holding DefaultClusterRoles.
func defaultSource(t *testing.T) *fakeSource {
	t.Helper()
	f := newFakeSource()
	roles, bindings := DefaultClusterRoles()
	for i := range roles {
		if _, dup := f.clusterRoles[roles[i].Name]; dup {
			t.Fatalf("duplicate cluster role %q", roles[i].Name)
		}
		f.clusterRoles[roles[i].Name] = &roles[i]
	}
	for _, b := range bindings {
		if _, ok := f.clusterRoles[b.RoleRef.Name]; !ok {
			t.Fatalf("binding %q references missing role %q", b.Name, b.RoleRef.Name)
		}
	}
	f.clusterRoleBindings = bindings
	return f
}

func TestDefaultClusterRoles(t *testing.T) {
	f := defaultSource(t)
	f.bind("team", "alice-edit", "ClusterRole", "edit", userSubj("alice"))
	f.bind("team", "vic-view", "ClusterRole", "view", userSubj("vic"))
	f.bind("team", "adam-admin", "ClusterRole", "admin", userSubj("adam"))
	r := NewRBAC(f)

	anyone := &User{Name: "nobody", Groups: []string{AllAuthenticated}}
	alice := &User{Name: "alice", Groups: []string{AllAuthenticated}}
	vic := &User{Name: "vic", Groups: []string{AllAuthenticated}}
	adam := &User{Name: "adam", Groups: []string{AllAuthenticated}}
	node := &User{Name: "system:node:n1", Groups: []string{NodesGroup, AllAuthenticated}}
	sched := &User{Name: KubeScheduler, Groups: []string{AllAuthenticated}}
	kcm := &User{Name: KubeControllerManager, Groups: []string{AllAuthenticated}}
	root := &User{Name: "admin", Groups: []string{SystemMasters, AllAuthenticated}}
	unauth := &User{Name: Anonymous, Groups: []string{AllUnauthenticated}}

	runAuthz(t, r, []authzCase{
		// any authenticated user: discovery, health, version, can-i
		{"version", path(anyone, "get", "/version"), true},
		{"healthz", path(anyone, "get", "/healthz"), true},
		{"api", path(anyone, "get", "/api"), true},
		{"api/v1", path(anyone, "get", "/api/v1"), true},
		{"apis/apps/v1", path(anyone, "get", "/apis/apps/v1"), true},
		{"openapi", path(anyone, "get", "/openapi/v3"), true},
		{"post /api", path(anyone, "post", "/api"), false},
		{"ssar", res(anyone, "create", "", authorizationGroup, "selfsubjectaccessreviews", "", ""), true},
		{"ssrr", res(anyone, "create", "", authorizationGroup, "selfsubjectrulesreviews", "", ""), true},
		{"whoami", res(anyone, "create", "", authenticationGroup, "selfsubjectreviews", "", ""), true},
		{"no pods", res(anyone, "list", "default", "", "pods", "", ""), false},
		{"unauthenticated healthz", path(unauth, "get", "/healthz"), true},
		{"unauthenticated api", path(unauth, "get", "/api"), false},
		// edit / view / admin bound in namespace team
		{"edit create deploy", res(alice, "create", "team", appsGroup, "deployments", "", ""), true},
		{"edit secrets", res(alice, "get", "team", "", "secrets", "", "s"), true},
		{"edit other ns", res(alice, "create", "other", appsGroup, "deployments", "", ""), false},
		{"edit roles", res(alice, "create", "team", rbacGroup, "roles", "", ""), false},
		{"edit pod status", res(alice, "update", "team", "", "pods", "status", "p"), false},
		{"view list pods", res(vic, "list", "team", "", "pods", "", ""), true},
		{"view logs", res(vic, "get", "team", "", "pods", "log", "p"), true},
		{"view no secrets", res(vic, "get", "team", "", "secrets", "", "s"), false},
		{"view no writes", res(vic, "delete", "team", "", "pods", "", "p"), false},
		{"admin rolebindings", res(adam, "create", "team", rbacGroup, "rolebindings", "", ""), true},
		{"admin no clusterroles", res(adam, "create", "", rbacGroup, "clusterroles", "", ""), false},
		// system:node
		{"node register", res(node, "create", "", "", "nodes", "", ""), true},
		{"node status", res(node, "patch", "", "", "nodes", "status", "n1"), true},
		{"node watch pods", res(node, "watch", "", "", "pods", "", ""), true},
		{"node pod status", res(node, "update", "ns", "", "pods", "status", "p"), true},
		{"node get secret", res(node, "get", "ns", "", "secrets", "", "s"), true},
		{"node list secrets", res(node, "list", "ns", "", "secrets", "", ""), false},
		{"node get configmap", res(node, "get", "ns", "", "configmaps", "", "c"), true},
		{"node events", res(node, "create", "ns", "", "events", "", ""), true},
		{"node lease", res(node, "update", "kube-node-lease", coordinationGroup, "leases", "", "n1"), true},
		{"node no deployments", res(node, "create", "ns", appsGroup, "deployments", "", ""), false},
		// scheduler
		{"sched bind", res(sched, "create", "ns", "", "pods", "binding", "p"), true},
		{"sched own lease", res(sched, "update", "kube-system", coordinationGroup, "leases", "", "kube-scheduler"), true},
		{"sched other lease", res(sched, "update", "kube-system", coordinationGroup, "leases", "", "kube-controller-manager"), false},
		{"sched no pod create", res(sched, "create", "ns", "", "pods", "", ""), false},
		// controller manager
		{"kcm watch anything", res(kcm, "watch", "", appsGroup, "replicasets", "", ""), true},
		{"kcm own lease", res(kcm, "get", "kube-system", coordinationGroup, "leases", "", "kube-controller-manager"), true},
		// cluster-admin via group binding, not only the short-cut
		{"masters", res(root, "delete", "", rbacGroup, "clusterroles", "", "x"), true},
	})

	// cluster-admin reached through the binding, without the short-cut.
	viaBinding := &User{Name: "ca", Groups: []string{"ops"}}
	f.bindCluster("ops-admin", "cluster-admin", groupSubj("ops"))
	runAuthz(t, r, []authzCase{
		{"cluster-admin binding", res(viaBinding, "deletecollection", "x", "weird.io", "things", "sub", ""), true},
		{"cluster-admin urls", path(viaBinding, "put", "/metrics"), true},
	})
}

func TestReviewSelf(t *testing.T) {
	f := defaultSource(t)
	f.bind("team", "vic-view", "ClusterRole", "view", userSubj("vic"))
	r := NewRBAC(f)
	vic := &User{Name: "vic", Groups: []string{AllAuthenticated}}

	st := ReviewSelf(r, vic, authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "team", Verb: "list", Resource: "pods"},
	})
	if !st.Allowed || st.Denied || st.EvaluationError != "" {
		t.Fatalf("can-i list pods -n team: %+v", st)
	}
	if w := `RBAC: allowed by RoleBinding "vic-view/team" of ClusterRole "view" to User "vic"`; st.Reason != w {
		t.Fatalf("reason %q, want %q", st.Reason, w)
	}
	st = ReviewSelf(r, vic, authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "team", Verb: "create", Group: "apps", Resource: "deployments"},
	})
	if st.Allowed || st.Denied {
		t.Fatalf("can-i create deployments: %+v", st)
	}
	st = ReviewSelf(r, vic, authorizationv1.SelfSubjectAccessReviewSpec{
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/version", Verb: "get"},
	})
	if !st.Allowed {
		t.Fatalf("can-i get /version: %+v", st)
	}
	st = ReviewSelf(r, vic, authorizationv1.SelfSubjectAccessReviewSpec{})
	if st.Allowed || st.EvaluationError == "" {
		t.Fatalf("empty spec: %+v", st)
	}
	// `kubectl auth can-i '*' '*'` asks for verb and resource "*": only a
	// rule with "*" matches, as in Kubernetes.
	st = ReviewSelf(r, &User{Name: "root", Groups: []string{"ops"}}, authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"},
	})
	if st.Allowed {
		t.Fatalf("can-i * * without cluster-admin: %+v", st)
	}
	f.bindCluster("ops-admin", "cluster-admin", groupSubj("ops"))
	st = ReviewSelf(r, &User{Name: "root", Groups: []string{"ops"}}, authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"},
	})
	if !st.Allowed {
		t.Fatalf("can-i * * with cluster-admin: %+v", st)
	}
}
