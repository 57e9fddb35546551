// Package nodeipam is the controller-manager's node IPAM controller
// (Kubernetes' RangeAllocator): it gives every Node a podCIDR of
// Options.NodeCIDRMaskSize bits cut from Options.ClusterCIDR, patched into
// spec.podCIDR and spec.podCIDRs.
//
// No CIDR is ever given to two nodes: before it allocates anything the
// controller marks every CIDR that a node in its synced cache already holds,
// and a new leader's cache (listed after it won the lease, when the old
// leader's writes are fenced off) holds every allocation the old one made.
// A node's CIDR is released when the node is deleted; when the range is
// full the node gets a CIDRNotAvailable event and waits for a release.
package nodeipam
