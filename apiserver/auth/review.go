package auth

import (
	"errors"

	authorizationv1 "k8s.io/api/authorization/v1"
)

// ValidateReviewSpec checks a SelfSubjectAccessReview spec the way
// kube-apiserver's validation does; a non-nil error should be answered with
// 422 Invalid before calling ReviewSelf.
func ValidateReviewSpec(spec authorizationv1.SelfSubjectAccessReviewSpec) error {
	switch {
	case spec.ResourceAttributes != nil && spec.NonResourceAttributes != nil:
		return errors.New("spec.resourceAttributes: Invalid value: cannot be specified in combination with nonResourceAttributes")
	case spec.ResourceAttributes == nil && spec.NonResourceAttributes == nil:
		return errors.New("spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified")
	}
	return nil
}

// ReviewSelf answers a SelfSubjectAccessReview (what `kubectl auth can-i`
// POSTs to /apis/authorization.k8s.io/v1/selfsubjectaccessreviews) for the
// authenticated user u. Field and label selectors of the spec are ignored,
// as RBAC ignores them. An invalid spec (see ValidateReviewSpec) is
// reported in EvaluationError with Allowed false. Denied stays false:
// RBAC never denies explicitly, it only fails to allow, exactly as in
// Kubernetes.
func ReviewSelf(a *RBAC, u *User, spec authorizationv1.SelfSubjectAccessReviewSpec) authorizationv1.SubjectAccessReviewStatus {
	if err := ValidateReviewSpec(spec); err != nil {
		return authorizationv1.SubjectAccessReviewStatus{EvaluationError: err.Error()}
	}
	attrs := Attributes{User: u}
	if ra := spec.ResourceAttributes; ra != nil {
		attrs.ResourceRequest = true
		attrs.Verb = ra.Verb
		attrs.Namespace = ra.Namespace
		attrs.APIGroup = ra.Group
		attrs.Resource = ra.Resource
		attrs.Subresource = ra.Subresource
		attrs.Name = ra.Name
	} else {
		attrs.Verb = spec.NonResourceAttributes.Verb
		attrs.Path = spec.NonResourceAttributes.Path
	}
	allowed, reason, err := a.Authorize(attrs)
	st := authorizationv1.SubjectAccessReviewStatus{Allowed: allowed, Reason: reason}
	if err != nil {
		st.EvaluationError = err.Error()
	}
	return st
}
