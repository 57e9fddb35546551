package apiserver

import (
	"net/http"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// serveSelfSubjectAccessReview answers `kubectl auth can-i`: may the caller
// do what the review describes?
func (s *Server) serveSelfSubjectAccessReview(w http.ResponseWriter, r *http.Request, user string, groups []string) {
	data, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	review := &authorizationv1.SelfSubjectAccessReview{}
	if err := decodeAny(data, review); err != nil {
		writeError(w, err)
		return
	}
	a := Attributes{Verb: "get", Path: "/"}
	switch {
	case review.Spec.ResourceAttributes != nil:
		ra := review.Spec.ResourceAttributes
		a = Attributes{Verb: ra.Verb, Namespace: ra.Namespace, APIGroup: ra.Group, Resource: ra.Resource, Subresource: ra.Subresource, Name: ra.Name, ResourceRequest: true}
	case review.Spec.NonResourceAttributes != nil:
		a = Attributes{Verb: review.Spec.NonResourceAttributes.Verb, Path: review.Spec.NonResourceAttributes.Path}
	default:
		writeError(w, apierrors.NewBadRequest("exactly one of resourceAttributes or nonResourceAttributes must be set"))
		return
	}
	review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true}
	if s.auth != nil {
		ok, reason, err := s.auth.Authorize(user, groups, a)
		if err != nil {
			review.Status = authorizationv1.SubjectAccessReviewStatus{EvaluationError: err.Error()}
		} else {
			review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: ok, Reason: reason}
		}
	}
	review.Kind, review.APIVersion = "SelfSubjectAccessReview", "authorization.k8s.io/v1"
	writeJSON(w, http.StatusCreated, "", review)
}
