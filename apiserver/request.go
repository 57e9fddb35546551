package apiserver

import (
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"synod/apiserver/resource"
)

// request is a parsed resource URL:
// /api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]] and the same
// under /apis/{group}/{version}.
type request struct {
	res       resource.Resource
	namespace string
	name      string
	sub       string
	verb      string // Kubernetes verb: get list watch create update patch delete deletecollection
}

// resourceIndex finds a resource by group/version/plural name.
type resourceIndex map[string]resource.Resource

func newResourceIndex(all []resource.Resource) resourceIndex {
	idx := resourceIndex{}
	for _, r := range all {
		idx[r.Group+"/"+r.Version+"/"+r.Name] = r
	}
	return idx
}

// parse maps a URL path onto a resource request; ok=false if the path is not
// a resource path at all (the caller tries other handlers), and an API error
// if it names something that does not exist.
func (idx resourceIndex) parse(r *http.Request) (*request, bool, error) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var group, version string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		version, parts = parts[1], parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		group, version, parts = parts[1], parts[2], parts[3:]
	default:
		return nil, false, nil
	}
	req := &request{}
	// namespaces/{ns}/{resource}... unless it is the namespace object itself.
	if len(parts) >= 3 && parts[0] == "namespaces" && !(group == "" && len(parts) == 3 && (parts[2] == "status" || parts[2] == "finalize")) {
		req.namespace, parts = parts[1], parts[2:]
	}
	res, ok := idx[group+"/"+version+"/"+parts[0]]
	if !ok {
		return nil, true, apierrors.NewNotFound(groupResource(group, parts[0]), "")
	}
	req.res = res
	if !res.Namespaced && req.namespace != "" {
		return nil, true, apierrors.NewNotFound(res.GVR().GroupResource(), "")
	}
	if len(parts) > 1 {
		req.name = parts[1]
	}
	if len(parts) > 2 {
		req.sub = parts[2]
		if !res.HasSubresource(req.sub) || len(parts) > 3 {
			return nil, true, apierrors.NewNotFound(res.GVR().GroupResource(), req.name)
		}
	}
	req.verb = verbFor(r, req.name != "")
	return req, true, nil
}

func verbFor(r *http.Request, named bool) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1" {
			return "watch"
		}
		if named {
			return "get"
		}
		return "list"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		if named {
			return "delete"
		}
		return "deletecollection"
	}
	return strings.ToLower(r.Method)
}
