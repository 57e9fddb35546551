// Package daemonset is the controller-manager's daemonset controller: one
// pod of each DaemonSet on every node that should run it, as Kubernetes'
// does.
//
// A node should run a DaemonSet's pod when the pod's nodeName (if any),
// nodeSelector and required node affinity match it and the pod tolerates
// the node's NoSchedule and NoExecute taints; an existing pod keeps running
// as long as only NoSchedule taints are untolerated. Like Kubernetes, the
// controller gives every daemon pod tolerations for not-ready and
// unreachable (NoExecute) and for the pressure and unschedulable taints
// (NoSchedule).
//
// Placement: since Kubernetes 1.12 daemon pods are placed by the default
// scheduler, and so they are here: each pod gets a required node affinity
// on metadata.name (matchFields) for its node, replacing any required
// affinity of the template, and the scheduler binds it. The controller
// never sets spec.nodeName itself, so scheduler-side resource accounting
// and events stay in one place.
//
// Updates: ControllerRevisions are not served, so pods carry a
// controller-revision-hash label computed from the template (and
// status.collisionCount). RollingUpdate replaces out-of-date pods honouring
// maxUnavailable, or maxSurge when it is set; OnDelete only uses the new
// template for pods it creates after the old ones are deleted.
//
// Daemon pods bound to nodes that no longer exist are deleted (Kubernetes
// leaves them to its pod garbage collector, which synod does not run).
// Orphaned pods matching a DaemonSet's selector are not adopted.
package daemonset
