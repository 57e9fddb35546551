// Package replicaset is the controller-manager's replicaset controller, as
// kube-controller-manager's: it keeps spec.replicas active pods for every
// ReplicaSet.
//
// Pods are created in slow-start batches (1, 2, 4, ...) so that a template
// the API rejects costs one failed request rather than hundreds, and deleted
// in Kubernetes' ActivePods order (unscheduled, pending, not ready, ready for
// the shortest time, newest first) so scale-downs remove the least useful
// pods. Orphan pods that match a ReplicaSet's selector are adopted (an
// ownerReference with controller=true is patched in) and owned pods that no
// longer match are released. Creations and deletions are remembered as
// expectations until the pod informer shows them, so a lagging cache never
// makes the controller create or delete twice.
//
// Status carries replicas, fullyLabeledReplicas, readyReplicas,
// availableReplicas (ready for minReadySeconds), observedGeneration and a
// ReplicaFailure condition when pods cannot be created or deleted. One
// deliberate difference from Kubernetes: observedGeneration only advances
// when a sync has actually acted on the spec (its expectations were met), so
// a reader that sees observedGeneration >= generation and replicas == 0
// knows no creation for an older spec is still in flight; the deployment
// controller's Recreate strategy relies on that.
package replicaset
