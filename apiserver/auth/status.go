package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// sanitizer keeps error messages from looking like HTML (Kubernetes'
// responsewriters does the same; quotes are fine).
var sanitizer = strings.NewReplacer(`&`, "&amp;", `<`, "&lt;", `>`, "&gt;")

// Unauthorized writes the 401 Status kube-apiserver returns when no
// authenticator accepted the request:
//
//	{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}
func Unauthorized(w http.ResponseWriter) {
	writeStatus(w, &apierrors.NewUnauthorized("Unauthorized").ErrStatus)
}

// Forbidden writes the 403 Status for a denied request, worded exactly as
// kube-apiserver words it, e.g.
//
//	pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"
//	pods "x" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "default"
//	nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope
//	forbidden: User "alice" cannot get path "/foo"
//
// A non-empty reason (from RBAC.Authorize) is appended after ": ".
func Forbidden(w http.ResponseWriter, a Attributes, reason string) {
	writeStatus(w, &ForbiddenStatus(a, reason).ErrStatus)
}

// ForbiddenStatus returns the error Forbidden writes, for callers that
// render Status objects themselves.
func ForbiddenStatus(a Attributes, reason string) *apierrors.StatusError {
	msg := sanitizer.Replace(forbiddenMessage(a))
	if reason != "" {
		msg += ": " + reason
	}
	var gr schema.GroupResource
	var name string
	if a.ResourceRequest {
		gr = schema.GroupResource{Group: a.APIGroup, Resource: a.Resource}
		name = a.Name
	}
	se := apierrors.NewForbidden(gr, name, stringError(msg))
	se.ErrStatus.Kind, se.ErrStatus.APIVersion = "Status", "v1"
	return se
}

func forbiddenMessage(a Attributes) string {
	username := ""
	if a.User != nil {
		username = a.User.Name
	}
	if !a.ResourceRequest {
		return fmt.Sprintf("User %q cannot %s path %q", username, a.Verb, a.Path)
	}
	resource := a.Resource
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	if a.Namespace != "" {
		return fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", username, a.Verb, resource, a.APIGroup, a.Namespace)
	}
	return fmt.Sprintf("User %q cannot %s resource %q in API group %q at the cluster scope", username, a.Verb, resource, a.APIGroup)
}

type stringError string

func (e stringError) Error() string { return string(e) }

// writeStatus writes s as a v1 Status JSON with s.Code as the HTTP status.
func writeStatus(w http.ResponseWriter, s *metav1.Status) {
	s.Kind, s.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(int(s.Code))
	_ = json.NewEncoder(w).Encode(s) // the client is gone if this fails
}
