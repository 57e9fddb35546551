// Package apiserver is synod's Kubernetes API server: a small REST layer over
// k8s.io/api types and k8s.io/apimachinery (scheme, codecs, selectors,
// patches, Tables, Status errors) that stores objects in the raftstore under
// /registry/<resource>/<namespace>/<name>, with the store revision as
// resourceVersion. It is stateless: every master runs one, any of them
// answers any request.
package apiserver
