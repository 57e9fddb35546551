package auth

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// API groups named by the bootstrap roles.
const (
	legacyGroup         = ""
	appsGroup           = "apps"
	authenticationGroup = "authentication.k8s.io"
	authorizationGroup  = "authorization.k8s.io"
	autoscalingGroup    = "autoscaling"
	batchGroup          = "batch"
	coordinationGroup   = "coordination.k8s.io"
	discoveryGroup      = "discovery.k8s.io"
	eventsGroup         = "events.k8s.io"
	networkingGroup     = "networking.k8s.io"
	policyGroup         = "policy"
	rbacGroup           = rbacv1.GroupName
	storageGroup        = "storage.k8s.io"
)

var (
	readVerbs      = []string{"get", "list", "watch"}
	writeVerbs     = []string{"create", "delete", "deletecollection", "patch", "update"}
	readWriteVerbs = append(append([]string(nil), readVerbs...), writeVerbs...)
)

// DefaultClusterRoles returns the subset of Kubernetes' bootstrap policy
// (plugin/pkg/auth/authorizer/rbac/bootstrappolicy) that synod serves, to be
// created at cluster bootstrap when missing. Differences from Kubernetes:
//
//   - admin, edit and view are plain roles listing synod's resources, not
//     aggregated ones (aggregation is not implemented).
//   - system:node is bound to group system:nodes (Kubernetes leaves that
//     binding empty and uses the Node authorizer) and grants leases
//     cluster-wide; keeping kubelets to kube-node-lease would need a Role
//     there, which a cluster role cannot express.
//   - system:kube-controller-manager is Kubernetes' role, which assumes
//     --use-service-account-credentials: it lets the controller manager
//     list and watch everything but write little. A controller manager that
//     runs every controller under its own identity needs more (or
//     system:masters).
func DefaultClusterRoles() ([]rbacv1.ClusterRole, []rbacv1.ClusterRoleBinding) {
	roles := []rbacv1.ClusterRole{
		clusterRole("cluster-admin",
			rule(all(), all(), "*"),
			urlRule(all(), "*"),
		),
		clusterRole("system:discovery",
			urlRule([]string{"get"}, "/livez", "/readyz", "/healthz", "/version", "/version/",
				"/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"),
		),
		clusterRole("system:basic-user",
			rule([]string{"create"}, groups(authorizationGroup), "selfsubjectaccessreviews", "selfsubjectrulesreviews"),
			rule([]string{"create"}, groups(authenticationGroup), "selfsubjectreviews"),
		),
		clusterRole("system:public-info-viewer",
			urlRule([]string{"get"}, "/livez", "/readyz", "/healthz", "/version", "/version/"),
		),
		clusterRole("admin", adminRules()...),
		clusterRole("edit", editRules()...),
		clusterRole("view", viewRules()...),
		clusterRole(KubeScheduler, schedulerRules()...),
		clusterRole(KubeControllerManager, controllerManagerRules()...),
		clusterRole("system:node", nodeRules()...),
	}
	bindings := []rbacv1.ClusterRoleBinding{
		clusterBinding("cluster-admin", groupSubjects(SystemMasters)...),
		clusterBinding("system:discovery", groupSubjects(AllAuthenticated)...),
		clusterBinding("system:basic-user", groupSubjects(AllAuthenticated)...),
		clusterBinding("system:public-info-viewer", groupSubjects(AllAuthenticated, AllUnauthenticated)...),
		clusterBinding(KubeScheduler, userSubject(KubeScheduler)),
		clusterBinding(KubeControllerManager, userSubject(KubeControllerManager)),
		clusterBinding("system:node", groupSubjects(NodesGroup)...),
	}
	return roles, bindings
}

// viewRules is read-only access to the namespaced, non-escalating
// resources: no secrets, no roles.
func viewRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		rule(readVerbs, groups(legacyGroup), "pods", "pods/log", "pods/status", "services", "services/status",
			"endpoints", "configmaps", "serviceaccounts", "events", "persistentvolumeclaims",
			"persistentvolumeclaims/status", "replicationcontrollers", "replicationcontrollers/scale",
			"replicationcontrollers/status", "limitranges", "resourcequotas", "resourcequotas/status",
			"bindings", "namespaces/status"),
		// Read access to namespaces at namespace scope means reading *this*
		// namespace, which tells a user which namespaces they can use.
		rule(readVerbs, groups(legacyGroup), "namespaces"),
		rule(readVerbs, groups(appsGroup), "deployments", "deployments/scale", "deployments/status",
			"replicasets", "replicasets/scale", "replicasets/status", "daemonsets", "daemonsets/status",
			"statefulsets", "statefulsets/scale", "statefulsets/status", "controllerrevisions"),
		rule(readVerbs, groups(batchGroup), "jobs", "jobs/status", "cronjobs", "cronjobs/status"),
		rule(readVerbs, groups(autoscalingGroup), "horizontalpodautoscalers", "horizontalpodautoscalers/status"),
		rule(readVerbs, groups(discoveryGroup), "endpointslices"),
		rule(readVerbs, groups(networkingGroup), "ingresses", "ingresses/status", "networkpolicies"),
		rule(readVerbs, groups(policyGroup), "poddisruptionbudgets", "poddisruptionbudgets/status"),
		rule(readVerbs, groups(eventsGroup), "events"),
	}
}

// editRules is view plus writes to workloads, config and secrets; no
// role or binding management, no status subresources.
func editRules() []rbacv1.PolicyRule {
	return append(viewRules(),
		rule(readWriteVerbs, groups(legacyGroup), "pods", "pods/attach", "pods/exec", "pods/portforward",
			"pods/proxy", "services", "services/proxy", "endpoints", "configmaps", "secrets", "serviceaccounts",
			"persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale"),
		rule([]string{"create"}, groups(legacyGroup), "pods/eviction", "serviceaccounts/token"),
		rule([]string{"impersonate"}, groups(legacyGroup), "serviceaccounts"),
		rule(readWriteVerbs, groups(appsGroup), "deployments", "deployments/scale", "deployments/rollback",
			"replicasets", "replicasets/scale", "daemonsets", "statefulsets", "statefulsets/scale"),
		rule(readWriteVerbs, groups(batchGroup), "jobs", "cronjobs"),
		rule(readWriteVerbs, groups(autoscalingGroup), "horizontalpodautoscalers"),
		rule(readWriteVerbs, groups(discoveryGroup), "endpointslices"),
		rule(readWriteVerbs, groups(networkingGroup), "ingresses", "networkpolicies"),
		rule(readWriteVerbs, groups(policyGroup), "poddisruptionbudgets"),
		rule(readWriteVerbs, groups(coordinationGroup), "leases"),
	)
}

// adminRules is edit plus managing roles and bindings in the namespace.
func adminRules() []rbacv1.PolicyRule {
	return append(editRules(),
		rule(readWriteVerbs, groups(rbacGroup), "roles", "rolebindings"),
		rule([]string{"create"}, groups(authorizationGroup), "localsubjectaccessreviews"),
	)
}

func eventsRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		rule([]string{"create", "update", "patch"}, groups(legacyGroup, eventsGroup), "events"),
	}
}

func schedulerRules() []rbacv1.PolicyRule {
	return append(eventsRules(),
		// leader election
		rule([]string{"create"}, groups(coordinationGroup), "leases"),
		named(rule([]string{"get", "update"}, groups(coordinationGroup), "leases"), "kube-scheduler"),
		rule(readVerbs, groups(legacyGroup), "nodes"),
		rule([]string{"get", "list", "watch", "delete"}, groups(legacyGroup), "pods"),
		rule([]string{"create"}, groups(legacyGroup), "bindings", "pods/binding"),
		rule([]string{"patch", "update"}, groups(legacyGroup), "pods/status"),
		// things that select pods
		rule(readVerbs, groups(legacyGroup), "services", "replicationcontrollers", "namespaces",
			"persistentvolumeclaims", "persistentvolumes"),
		rule(readVerbs, groups(appsGroup), "replicasets", "statefulsets"),
		rule(readVerbs, groups(policyGroup), "poddisruptionbudgets"),
		rule(readVerbs, groups(storageGroup), "storageclasses", "csinodes", "csidrivers", "csistoragecapacities"),
		rule([]string{"create"}, groups(authenticationGroup), "tokenreviews"),
		rule([]string{"create"}, groups(authorizationGroup), "subjectaccessreviews"),
	)
}

func controllerManagerRules() []rbacv1.PolicyRule {
	return append(eventsRules(),
		// leader election
		rule([]string{"create"}, groups(coordinationGroup), "leases"),
		named(rule([]string{"get", "update"}, groups(coordinationGroup), "leases"), "kube-controller-manager"),
		// creating per-controller service accounts and their credentials
		rule([]string{"create"}, groups(legacyGroup), "secrets", "serviceaccounts"),
		rule([]string{"delete"}, groups(legacyGroup), "secrets"),
		rule([]string{"get"}, groups(legacyGroup), "configmaps", "namespaces", "secrets", "serviceaccounts"),
		rule([]string{"update"}, groups(legacyGroup), "secrets", "serviceaccounts"),
		rule([]string{"create"}, groups(legacyGroup), "serviceaccounts/token"),
		rule([]string{"create"}, groups(authenticationGroup), "tokenreviews"),
		rule([]string{"create"}, groups(authorizationGroup), "subjectaccessreviews"),
		// the generic informers (garbage collector, quota)
		rule([]string{"list", "watch"}, all(), "*"),
	)
}

// nodeRules is what a kubelet needs to register its node, heartbeat, run
// and report the pods bound to it.
func nodeRules() []rbacv1.PolicyRule {
	return append(eventsRules(),
		rule([]string{"create", "get", "list", "watch", "update", "patch", "delete"}, groups(legacyGroup), "nodes"),
		rule([]string{"update", "patch"}, groups(legacyGroup), "nodes/status"),
		rule([]string{"get", "list", "watch", "create", "delete"}, groups(legacyGroup), "pods"),
		rule([]string{"update", "patch"}, groups(legacyGroup), "pods/status"),
		rule([]string{"create"}, groups(legacyGroup), "pods/eviction"),
		rule([]string{"get"}, groups(legacyGroup), "configmaps", "secrets", "persistentvolumeclaims", "persistentvolumes"),
		rule([]string{"list", "watch"}, groups(legacyGroup), "services"),
		rule([]string{"list", "watch"}, groups(discoveryGroup), "endpointslices"),
		rule([]string{"create"}, groups(legacyGroup), "serviceaccounts/token"),
		// node heartbeats (in Kubernetes, NodeRestriction admission keeps a
		// kubelet to its own lease in kube-node-lease)
		rule([]string{"get", "create", "update", "patch", "delete"}, groups(coordinationGroup), "leases"),
		rule([]string{"create"}, groups(authenticationGroup), "tokenreviews"),
		rule([]string{"create"}, groups(authorizationGroup), "subjectaccessreviews", "localsubjectaccessreviews"),
	)
}

func all() []string                   { return []string{"*"} }
func groups(names ...string) []string { return names }

func rule(verbs, apiGroups []string, resources ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, APIGroups: apiGroups, Resources: resources}
}

func urlRule(verbs []string, urls ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, NonResourceURLs: urls}
}

func named(r rbacv1.PolicyRule, names ...string) rbacv1.PolicyRule {
	r.ResourceNames = names
	return r
}

// bootstrapMeta marks objects as Kubernetes marks its bootstrap policy:
// the label identifies them, the annotation says the server may reconcile
// them on upgrade.
func bootstrapMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"},
		Annotations: map[string]string{"rbac.authorization.kubernetes.io/autoupdate": "true"},
	}
}

func clusterRole(name string, rules ...rbacv1.PolicyRule) rbacv1.ClusterRole {
	return rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{Kind: "ClusterRole", APIVersion: rbacv1.SchemeGroupVersion.String()},
		ObjectMeta: bootstrapMeta(name),
		Rules:      rules,
	}
}

func clusterBinding(role string, subjects ...rbacv1.Subject) rbacv1.ClusterRoleBinding {
	return rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{Kind: "ClusterRoleBinding", APIVersion: rbacv1.SchemeGroupVersion.String()},
		ObjectMeta: bootstrapMeta(role),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	}
}

func groupSubjects(names ...string) []rbacv1.Subject {
	out := make([]rbacv1.Subject, len(names))
	for i, n := range names {
		out[i] = rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacGroup, Name: n}
	}
	return out
}

func userSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacGroup, Name: name}
}
