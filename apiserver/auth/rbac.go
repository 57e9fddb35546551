package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// Attributes describe one request for authorization, like Kubernetes'
// authorizer.Attributes.
//
// For a resource request (ResourceRequest true) Verb is one of get, list,
// watch, create, update, patch, delete, deletecollection; APIGroup is ""
// for the core group; Namespace is "" for cluster-scoped resources and for
// requests across all namespaces. For a non-resource request (/healthz,
// /version, /api, /apis/...) only Verb (lower-case HTTP method: get for
// GET/HEAD, post, put, ...) and Path are used.
type Attributes struct {
	User            *User
	Verb            string
	Namespace       string
	APIGroup        string
	Resource        string
	Subresource     string
	Name            string
	Path            string
	ResourceRequest bool
}

// RBACSource is where the authorizer reads roles and bindings. It is called
// on every request, so it should be served from memory (an informer-style
// cache over the store), and it must be safe for concurrent use.
//
// GetRole and GetClusterRole return an error (of any kind) when the role
// does not exist; a nil role with a nil error is treated the same way. Such
// errors never fail a request on their own: rules are purely additive, so
// the authorizer carries on with the bindings it can resolve and only
// mentions the errors in the reason of a denial.
type RBACSource interface {
	ListClusterRoleBindings() ([]rbacv1.ClusterRoleBinding, error)
	GetClusterRole(name string) (*rbacv1.ClusterRole, error)
	ListRoleBindings(namespace string) ([]rbacv1.RoleBinding, error)
	GetRole(namespace, name string) (*rbacv1.Role, error)
}

// RBAC is Kubernetes' RBAC authorizer (plugin/pkg/auth/authorizer/rbac and
// pkg/registry/rbac/validation), ported without aggregation, plus the
// system:masters short-cut that kube-apiserver's privileged-group
// authorizer provides in front of it.
type RBAC struct {
	src RBACSource
}

// NewRBAC returns an authorizer reading roles and bindings from src.
func NewRBAC(src RBACSource) *RBAC { return &RBAC{src: src} }

// Authorize decides a.
//
// allowed=true comes with a reason naming the binding that allowed it.
// allowed=false comes with an empty reason, or with "RBAC: <errors>" when
// some bindings could not be resolved (a role missing, the source failing);
// the caller writes Forbidden(w, a, reason). err is non-nil only for a call
// that cannot be evaluated at all (no user), which the caller should treat
// as a 500, as Kubernetes does.
func (r *RBAC) Authorize(a Attributes) (allowed bool, reason string, err error) {
	if a.User == nil {
		return false, "", errors.New("auth: authorize: no user in attributes")
	}
	if a.User.InGroup(SystemMasters) {
		return true, "allowed: user is in group " + SystemMasters, nil
	}
	v := &authorizingVisitor{attrs: &a}
	r.visitRulesFor(a.User, a.Namespace, v.visit)
	if v.allowed {
		return true, v.reason, nil
	}
	if len(v.errs) > 0 {
		return false, "RBAC: " + joinErrors(v.errs), nil
	}
	return false, "", nil
}

// authorizingVisitor short-circuits once a rule allows the request and
// collects resolution errors on the way.
type authorizingVisitor struct {
	attrs   *Attributes
	allowed bool
	reason  string
	errs    []error
}

func (v *authorizingVisitor) visit(source fmt.Stringer, rule *rbacv1.PolicyRule, err error) bool {
	if rule != nil && RuleAllows(v.attrs, rule) {
		v.allowed = true
		v.reason = "RBAC: allowed by " + source.String()
		return false
	}
	if err != nil {
		v.errs = append(v.errs, err)
	}
	return true
}

// visitRulesFor calls visitor with every rule that applies to u in
// namespace (cluster role bindings first, then, if namespace is set, that
// namespace's role bindings), and with every error met resolving them. A
// visitor returning false stops the walk.
func (r *RBAC) visitRulesFor(u *User, namespace string, visitor func(source fmt.Stringer, rule *rbacv1.PolicyRule, err error) bool) {
	crbs, err := r.src.ListClusterRoleBindings()
	if err != nil {
		if !visitor(nil, nil, err) {
			return
		}
	}
	for i := range crbs {
		b := &crbs[i]
		si, ok := appliesTo(u, b.Subjects, "")
		if !ok {
			continue
		}
		rules, err := r.roleRefRules(b.RoleRef, "")
		if err != nil {
			if !visitor(nil, nil, err) {
				return
			}
			continue
		}
		src := &bindingDescriber{kind: "ClusterRoleBinding", name: b.Name, ref: b.RoleRef, subject: &b.Subjects[si]}
		for j := range rules {
			if !visitor(src, &rules[j], nil) {
				return
			}
		}
	}
	if namespace == "" {
		return
	}
	rbs, err := r.src.ListRoleBindings(namespace)
	if err != nil {
		visitor(nil, nil, err)
		return
	}
	for i := range rbs {
		b := &rbs[i]
		si, ok := appliesTo(u, b.Subjects, namespace)
		if !ok {
			continue
		}
		rules, err := r.roleRefRules(b.RoleRef, namespace)
		if err != nil {
			if !visitor(nil, nil, err) {
				return
			}
			continue
		}
		src := &bindingDescriber{kind: "RoleBinding", name: b.Name + "/" + namespace, ref: b.RoleRef, subject: &b.Subjects[si], namespace: namespace}
		for j := range rules {
			if !visitor(src, &rules[j], nil) {
				return
			}
		}
	}
}

// roleRefRules resolves the role a binding points at. bindingNamespace is
// "" for a ClusterRoleBinding, which can only reference ClusterRoles.
func (r *RBAC) roleRefRules(ref rbacv1.RoleRef, bindingNamespace string) ([]rbacv1.PolicyRule, error) {
	switch ref.Kind {
	case "Role":
		if bindingNamespace == "" {
			return nil, fmt.Errorf("cluster role binding references Role %q", ref.Name)
		}
		role, err := r.src.GetRole(bindingNamespace, ref.Name)
		if err != nil {
			return nil, err
		}
		if role == nil {
			return nil, fmt.Errorf("role.rbac.authorization.k8s.io %q not found", ref.Name)
		}
		return role.Rules, nil
	case "ClusterRole":
		role, err := r.src.GetClusterRole(ref.Name)
		if err != nil {
			return nil, err
		}
		if role == nil {
			return nil, fmt.Errorf("clusterrole.rbac.authorization.k8s.io %q not found", ref.Name)
		}
		return role.Rules, nil
	default:
		return nil, fmt.Errorf("unsupported role reference kind: %q", ref.Kind)
	}
}

// appliesTo returns the index of the first subject that names u.
// namespace is the binding's namespace ("" for cluster bindings); it is the
// default namespace of ServiceAccount subjects that leave theirs empty.
func appliesTo(u *User, subjects []rbacv1.Subject, namespace string) (int, bool) {
	for i := range subjects {
		if appliesToUser(u, &subjects[i], namespace) {
			return i, true
		}
	}
	return 0, false
}

func appliesToUser(u *User, s *rbacv1.Subject, namespace string) bool {
	switch s.Kind {
	case rbacv1.UserKind:
		return u.Name == s.Name
	case rbacv1.GroupKind:
		return slices.Contains(u.Groups, s.Name)
	case rbacv1.ServiceAccountKind:
		ns := namespace
		if s.Namespace != "" {
			ns = s.Namespace
		}
		if ns == "" {
			return false
		}
		return u.Name == ServiceAccountUsername(ns, s.Name)
	default:
		return false
	}
}

// bindingDescriber names the binding and subject that granted a rule, in
// Kubernetes' words: `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`.
type bindingDescriber struct {
	kind, name string
	ref        rbacv1.RoleRef
	subject    *rbacv1.Subject
	namespace  string // binding namespace; "" for cluster bindings
}

func (d *bindingDescriber) String() string {
	return fmt.Sprintf("%s %q of %s %q to %s", d.kind, d.name, d.ref.Kind, d.ref.Name, describeSubject(d.subject, d.namespace))
}

func describeSubject(s *rbacv1.Subject, bindingNamespace string) string {
	if s.Kind == rbacv1.ServiceAccountKind {
		ns := s.Namespace
		if ns == "" {
			ns = bindingNamespace
		}
		return fmt.Sprintf("%s %q", s.Kind, s.Name+"/"+ns)
	}
	return fmt.Sprintf("%s %q", s.Kind, s.Name)
}

func joinErrors(errs []error) string {
	if len(errs) == 1 {
		return errs[0].Error()
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return "[" + strings.Join(msgs, ", ") + "]"
}

// RuleAllows reports whether rule grants the request a.
func RuleAllows(a *Attributes, rule *rbacv1.PolicyRule) bool {
	if !a.ResourceRequest {
		return verbMatches(rule, a.Verb) && nonResourceURLMatches(rule, a.Path)
	}
	combined := a.Resource
	if a.Subresource != "" {
		combined = a.Resource + "/" + a.Subresource
	}
	return verbMatches(rule, a.Verb) &&
		apiGroupMatches(rule, a.APIGroup) &&
		resourceMatches(rule, combined, a.Subresource) &&
		resourceNameMatches(rule, a.Name)
}

func verbMatches(rule *rbacv1.PolicyRule, verb string) bool {
	for _, v := range rule.Verbs {
		if v == rbacv1.VerbAll || v == verb {
			return true
		}
	}
	return false
}

func apiGroupMatches(rule *rbacv1.PolicyRule, group string) bool {
	for _, g := range rule.APIGroups {
		if g == rbacv1.APIGroupAll || g == group {
			return true
		}
	}
	return false
}

// resourceMatches matches "*", the exact "resource" or
// "resource/subresource", and "*/subresource".
func resourceMatches(rule *rbacv1.PolicyRule, combined, subresource string) bool {
	for _, r := range rule.Resources {
		if r == rbacv1.ResourceAll || r == combined {
			return true
		}
		if subresource != "" && r == "*/"+subresource {
			return true
		}
	}
	return false
}

// resourceNameMatches: an empty ResourceNames list matches every name
// (including none, as in list and create); otherwise the request must name
// one of them.
func resourceNameMatches(rule *rbacv1.PolicyRule, name string) bool {
	if len(rule.ResourceNames) == 0 {
		return true
	}
	return slices.Contains(rule.ResourceNames, name)
}

// nonResourceURLMatches matches "*", the exact path, and a prefix ending
// in "*" ("/healthz/*" matches "/healthz/etcd", not "/healthz").
func nonResourceURLMatches(rule *rbacv1.PolicyRule, path string) bool {
	for _, u := range rule.NonResourceURLs {
		if u == rbacv1.NonResourceAll || u == path {
			return true
		}
		if strings.HasSuffix(u, "*") && strings.HasPrefix(path, strings.TrimRight(u, "*")) {
			return true
		}
	}
	return false
}
