// Package endpointutil is what the endpoint and endpointslice controllers
// share, after Kubernetes' pkg/controller/util/endpoint and
// staging/.../endpointslice/util: which pods belong in a service's
// endpoints, how a service port resolves against a pod, which services
// select a pod, and the last-change-trigger-time bookkeeping.
package endpointutil
