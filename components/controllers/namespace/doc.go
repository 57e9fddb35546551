// Package namespace is the controller-manager's namespace controller,
// after Kubernetes' namespace deleter. The apiserver only marks a deleted
// namespace (deletionTimestamp, phase Terminating) and keeps it while its
// spec.finalizers hold "kubernetes". This controller then deletes every
// namespaced object in it (resources found through discovery, objects
// through the metadata client), waits until they are gone (pods wait for
// their kubelet), reports progress in the namespace's conditions as
// Kubernetes does (NamespaceDeletionDiscoveryFailure,
// NamespaceDeletionContentFailure, NamespaceContentRemaining,
// NamespaceFinalizersRemaining, ...) and finally removes the "kubernetes"
// finalizer through the finalize subresource, upon which the apiserver
// removes the namespace.
package namespace
