// Package deployment is the controller-manager's deployment controller, as
// kube-controller-manager's: a Deployment owns ReplicaSets named
// <deployment>-<pod-template-hash>, one per pod template it has had, and
// moves replicas from the old ones to the one matching its template.
//
// RollingUpdate adds new pods and removes old ones within maxSurge and
// maxUnavailable (percentages round surge up, unavailable down); Recreate
// scales every old ReplicaSet to zero, waits until their pods are gone, then
// scales up the new one. Revisions are kept in the
// deployment.kubernetes.io/revision annotation of the Deployment and of its
// ReplicaSets (a ReplicaSet that becomes current again takes the next
// revision and remembers its earlier ones in revision-history), old
// ReplicaSets beyond revisionHistoryLimit are deleted once empty, a paused
// Deployment only scales (proportionally across its ReplicaSets), and the
// Progressing and Available conditions and status counters follow
// Kubernetes' rules, which kubectl rollout status reads.
//
// The rollout bounds are kept more strictly than Kubernetes does. Where
// Kubernetes sizes ReplicaSets from their spec and status alone, this
// controller also counts the pods in its cache: a ReplicaSet counts as
// max(spec.replicas, its active pods) toward the surge bound and as
// min(spec.replicas, its available pods) toward the availability bound, so
// pods whose deletion is still in flight, or status that lags the pods,
// never let it overshoot. It also waits, before acting on a Deployment,
// until its cache shows the ReplicaSet writes it made itself. Rollback
// (kubectl rollout undo) is done by kubectl, which copies an old
// ReplicaSet's template into the Deployment; this controller then finds
// that ReplicaSet as the new one and gives it the next revision.
package deployment
