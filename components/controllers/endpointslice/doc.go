// Package endpointslice is the controller-manager's endpointslice
// controller: for every Service with a selector it keeps discovery.k8s.io/v1
// EndpointSlices (IPv4, at most 100 endpoints each, owned by the service)
// listing the selected pods with their ready/serving/terminating
// conditions, node and zone. Like Kubernetes' reconciler it rewrites as few
// slices as it can: endpoints stay in their slice, new ones fill slices that
// are written anyway, and a service without endpoints keeps one empty
// placeholder slice.
package endpointslice
