// Package discovery serves the Kubernetes discovery documents (/api, /apis,
// their group and group-version lists, both the legacy and the aggregated
// apidiscovery.k8s.io/v2 form), /version and a minimal /openapi/v2, built
// from synod's resource table. It is what kubectl and client-go read to turn
// "po" into pods, "deploy/web --replicas" into apps/v1 deployments/scale of
// kind autoscaling/v1 Scale, and so on.
package discovery

import (
	"runtime"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apimachineryversion "k8s.io/apimachinery/pkg/version"

	"synod/apiserver/resource"
)

// Verbs every served top-level resource supports.
var resourceVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// subresourceInfo says how a subresource appears in discovery. An empty
// kind means "the parent's kind"; an empty group/version means "the
// parent's group-version" (discovery leaves those fields blank).
type subresourceInfo struct {
	group, version, kind string
	verbs                []string
}

// subresources maps a subresource name to its discovery entry, as
// kube-apiserver 1.32 lists it. Unknown subresources get the parent's kind
// and verb get.
var subresources = map[string]subresourceInfo{
	"status":              {verbs: []string{"get", "patch", "update"}},
	"scale":               {group: "autoscaling", version: "v1", kind: "Scale", verbs: []string{"get", "patch", "update"}},
	"binding":             {kind: "Binding", verbs: []string{"create"}},
	"log":                 {kind: "Pod", verbs: []string{"get"}},
	"exec":                {kind: "PodExecOptions", verbs: []string{"create", "get"}},
	"attach":              {kind: "PodAttachOptions", verbs: []string{"create", "get"}},
	"portforward":         {kind: "PodPortForwardOptions", verbs: []string{"create", "get"}},
	"proxy":               {kind: "PodProxyOptions", verbs: []string{"create", "delete", "get", "patch", "update"}},
	"eviction":            {group: "policy", version: "v1", kind: "Eviction", verbs: []string{"create"}},
	"ephemeralcontainers": {verbs: []string{"get", "patch", "update"}},
	"finalize":            {verbs: []string{"update"}},
}

// SelfSubjectAccessReviews is the authorization.k8s.io/v1 resource kubectl
// auth can-i posts to. New lists it in discovery; the caller serves it.
var SelfSubjectAccessReviews = metav1.APIResource{
	Name:         "selfsubjectaccessreviews",
	SingularName: "selfsubjectaccessreview",
	Namespaced:   false,
	Kind:         "SelfSubjectAccessReview",
	Verbs:        []string{"create"},
}

// AuthorizationV1 is the group-version of SelfSubjectAccessReviews.
var AuthorizationV1 = schema.GroupVersion{Group: "authorization.k8s.io", Version: "v1"}

// DefaultVersion is the /version answer when New is given a zero Info.
func DefaultVersion() apimachineryversion.Info {
	return apimachineryversion.Info{
		Major:        "1",
		Minor:        "32",
		GitVersion:   "v1.32.0-synod",
		GitTreeState: "clean",
		BuildDate:    "1970-01-01T00:00:00Z",
		GoVersion:    runtime.Version(),
		Compiler:     runtime.Compiler,
		Platform:     runtime.GOOS + "/" + runtime.GOARCH,
	}
}

// Discovery holds the discovery documents. It is safe for concurrent use;
// AddResource may be called while requests are being served.
type Discovery struct {
	version apimachineryversion.Info

	// mu guards groups.
	mu sync.RWMutex
	// groups in discovery order; groups[0] is always the core group "".
	groups []*group
}

// group is one API group and its versions, the first being preferred.
type group struct {
	name     string
	versions []*groupVersion
}

// groupVersion is one group-version and its resources in discovery order,
// subresources ("pods/status") included as separate entries.
type groupVersion struct {
	version   string
	resources []metav1.APIResource
}

// New builds the discovery documents once from the resource table, plus
// authorization.k8s.io/v1 selfsubjectaccessreviews. A zero version is
// replaced by DefaultVersion().
func New(resources []resource.Resource, version apimachineryversion.Info) *Discovery {
	if version == (apimachineryversion.Info{}) {
		version = DefaultVersion()
	}
	d := &Discovery{version: version, groups: []*group{{name: ""}}}
	for _, r := range resources {
		for _, ar := range apiResources(r) {
			d.unsafeAdd(r.GroupVersion(), ar)
		}
	}
	d.unsafeAdd(AuthorizationV1, SelfSubjectAccessReviews)
	return d
}

// AddResource lists r under gv, creating the group and version if needed
// (the first version added to a group is its preferred version). A
// subresource is added by name ("widgets/status"); an entry with the same
// name replaces the old one.
func (d *Discovery) AddResource(gv schema.GroupVersion, r metav1.APIResource) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unsafeAdd(gv, r)
}

// unsafeAdd is AddResource with d.mu held (or not yet shared).
func (d *Discovery) unsafeAdd(gv schema.GroupVersion, r metav1.APIResource) {
	v := d.unsafeGroupVersion(gv, true)
	for i := range v.resources {
		if v.resources[i].Name == r.Name {
			v.resources[i] = r
			return
		}
	}
	v.resources = append(v.resources, r)
}

// unsafeGroupVersion finds gv, creating it if create is set; nil if absent.
func (d *Discovery) unsafeGroupVersion(gv schema.GroupVersion, create bool) *groupVersion {
	g := d.unsafeGroup(gv.Group)
	if g == nil {
		if !create {
			return nil
		}
		g = &group{name: gv.Group}
		d.groups = append(d.groups, g)
	}
	for _, v := range g.versions {
		if v.version == gv.Version {
			return v
		}
	}
	if !create {
		return nil
	}
	v := &groupVersion{version: gv.Version}
	g.versions = append(g.versions, v)
	return v
}

// unsafeGroup finds a group by name; nil if absent.
func (d *Discovery) unsafeGroup(name string) *group {
	for _, g := range d.groups {
		if g.name == name {
			return g
		}
	}
	return nil
}

// apiResources returns r's discovery entries: the resource itself, then
// one entry per subresource.
func apiResources(r resource.Resource) []metav1.APIResource {
	out := []metav1.APIResource{{
		Name:         r.Name,
		SingularName: r.Singular,
		Namespaced:   r.Namespaced,
		Kind:         r.Kind,
		Verbs:        resourceVerbs,
		ShortNames:   r.ShortNames,
		Categories:   r.Categories,
	}}
	for _, sub := range r.Subresources {
		info, ok := subresources[sub]
		if !ok {
			info = subresourceInfo{verbs: []string{"get"}}
		}
		kind := info.kind
		if kind == "" {
			kind = r.Kind
		}
		out = append(out, metav1.APIResource{
			Name:       r.Name + "/" + sub,
			Namespaced: r.Namespaced,
			Group:      info.group,
			Version:    info.version,
			Kind:       kind,
			Verbs:      info.verbs,
		})
	}
	return out
}

// isSubresource reports whether an APIResource name is "parent/sub".
func isSubresource(name string) bool { return strings.Contains(name, "/") }
