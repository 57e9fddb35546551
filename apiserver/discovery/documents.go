package discovery

import (
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The documents below are built from d.groups under d.mu (read-locked by
// the caller) and must be serialized before the lock is released, since
// they share slices with d.groups.

// serverAddresses is the serverAddressByClientCIDRs answer: every client
// reaches the API server at the address it used.
func serverAddresses(host string) []metav1.ServerAddressByClientCIDR {
	return []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: host}}
}

// unsafeAPIVersions is the legacy /api document.
func (d *Discovery) unsafeAPIVersions(host string) *metav1.APIVersions {
	out := &metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		ServerAddressByClientCIDRs: serverAddresses(host),
	}
	for _, v := range d.groups[0].versions {
		out.Versions = append(out.Versions, v.version)
	}
	return out
}

// unsafeAPIGroupList is the legacy /apis document.
func (d *Discovery) unsafeAPIGroupList(host string) *metav1.APIGroupList {
	out := &metav1.APIGroupList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
		Groups:   []metav1.APIGroup{},
	}
	for _, g := range d.groups[1:] {
		out.Groups = append(out.Groups, *g.apiGroup(host))
	}
	return out
}

// apiGroup is the legacy /apis/<group> document.
func (g *group) apiGroup(host string) *metav1.APIGroup {
	out := &metav1.APIGroup{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:                       g.name,
		ServerAddressByClientCIDRs: serverAddresses(host),
	}
	for _, v := range g.versions {
		out.Versions = append(out.Versions, metav1.GroupVersionForDiscovery{
			GroupVersion: schema.GroupVersion{Group: g.name, Version: v.version}.String(),
			Version:      v.version,
		})
	}
	if len(out.Versions) > 0 {
		out.PreferredVersion = out.Versions[0]
	}
	return out
}

// apiResourceList is the legacy /api/<v> or /apis/<group>/<v> document.
func (v *groupVersion) apiResourceList(groupName string) *metav1.APIResourceList {
	out := &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: schema.GroupVersion{Group: groupName, Version: v.version}.String(),
		APIResources: v.resources,
	}
	if groupName == "" {
		out.APIVersion = "" // kube-apiserver leaves it out for /api/v1
	}
	if out.APIResources == nil {
		out.APIResources = []metav1.APIResource{}
	}
	return out
}

// unsafeAggregated is the apidiscovery.k8s.io/v2 APIGroupDiscoveryList for
// /api (core only) or /apis (every other group).
func (d *Discovery) unsafeAggregated(core bool) *apidiscoveryv2.APIGroupDiscoveryList {
	groups := d.groups[1:]
	if core {
		groups = d.groups[:1]
	}
	out := &apidiscoveryv2.APIGroupDiscoveryList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: apidiscoveryv2.SchemeGroupVersion.String()},
		Items:    []apidiscoveryv2.APIGroupDiscovery{},
	}
	for _, g := range groups {
		item := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: g.name}}
		for _, v := range g.versions {
			item.Versions = append(item.Versions, apidiscoveryv2.APIVersionDiscovery{
				Version:   v.version,
				Resources: aggregatedResources(v.resources),
				Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
			})
		}
		out.Items = append(out.Items, item)
	}
	return out
}

// aggregatedResources folds legacy entries into the aggregated form, where
// subresources hang off their parent. A subresource whose parent is not
// listed gets a parent entry without a kind, which clients skip.
func aggregatedResources(list []metav1.APIResource) []apidiscoveryv2.APIResourceDiscovery {
	var out []apidiscoveryv2.APIResourceDiscovery
	index := map[string]int{}
	parent := func(name string, namespaced bool) *apidiscoveryv2.APIResourceDiscovery {
		if i, ok := index[name]; ok {
			return &out[i]
		}
		index[name] = len(out)
		out = append(out, apidiscoveryv2.APIResourceDiscovery{Resource: name, Scope: scope(namespaced), Verbs: []string{}})
		return &out[len(out)-1]
	}
	for _, r := range list {
		if !isSubresource(r.Name) {
			p := parent(r.Name, r.Namespaced)
			p.ResponseKind = &metav1.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind}
			p.Scope = scope(r.Namespaced)
			p.SingularResource = r.SingularName
			p.Verbs = r.Verbs
			p.ShortNames = r.ShortNames
			p.Categories = r.Categories
			continue
		}
		name, sub, _ := strings.Cut(r.Name, "/")
		p := parent(name, r.Namespaced)
		p.Subresources = append(p.Subresources, apidiscoveryv2.APISubresourceDiscovery{
			Subresource:  sub,
			ResponseKind: &metav1.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind},
			Verbs:        r.Verbs,
		})
	}
	return out
}

func scope(namespaced bool) apidiscoveryv2.ResourceScope {
	if namespaced {
		return apidiscoveryv2.ScopeNamespace
	}
	return apidiscoveryv2.ScopeCluster
}
