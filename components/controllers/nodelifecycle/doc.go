// Package nodelifecycle is the controller-manager's node lifecycle
// controller, with Kubernetes' taint-based eviction (the
// taint-eviction-controller) folded in.
//
// Node health: every Options.NodeMonitorPeriod the controller looks at each
// Node and its Lease in kube-node-lease. A node whose Lease renewTime and
// Ready lastHeartbeatTime have not advanced for Options.NodeMonitorGracePeriod
// gets every condition set to Unknown ("Kubelet stopped posting node
// status."). As in Kubernetes, the grace period is measured on this
// controller's own clock from the moment it last saw either value change, so
// clock skew between kubelets and masters does not matter and a new leader
// starts every node's grace period afresh.
//
// Taints follow the conditions (Kubernetes' TaintBasedEvictions and
// TaintNodesByCondition): Ready=Unknown gives node.kubernetes.io/unreachable
// NoExecute and NoSchedule, Ready=False node.kubernetes.io/not-ready, the
// pressure conditions and spec.unschedulable their NoSchedule taints; taints
// no longer justified are removed. Pods on a node that is not Ready are
// marked Ready=False (MarkPodsNotReady).
//
// Eviction: a pod bound to a node with NoExecute taints it does not tolerate
// is deleted at once; a pod whose tolerations carry tolerationSeconds is
// deleted that long after the taint's timeAdded.
package nodelifecycle
