// Package scheduler is the default scheduler: it watches pods without a node
// whose spec.schedulerName is default-scheduler, filters and scores the nodes
// as kube-scheduler's default plugins do, and binds each pod through the
// pods/binding subresource.
//
// The parts, as in kube-scheduler:
//
//   - queue.go: pending pods by key, in a client-go rate-limited workqueue.
//     A pod that fits nowhere is retried after a backoff (1s doubling to
//     10s) and, at once, when a node is added or changed, or a pod leaves
//     a node, in a way that lets it pass the filters on that node.
//   - cache.go: every node with the pods assigned to it aggregated
//     (requests, host ports, pods per controller), updated incrementally
//     from the informers and from the scheduler's own assumptions: a pod is
//     accounted to its node as soon as it is chosen, before its binding is
//     seen, and the assumption is dropped if the binding fails.
//   - plugins.go: the filters (NodeUnschedulable, NodeName, TaintToleration
//     with the not-ready/unreachable condition taints, NodeAffinity and
//     nodeSelector, NodePorts, NodeResourcesFit), the scores
//     (LeastAllocated, BalancedAllocation, preferred node affinity,
//     PreferNoSchedule taints, spreading a controller's pods) with the
//     default profile's normalisation and weights, and the FailedScheduling
//     message in Kubernetes' words.
//   - scheduler.go: one scheduling cycle at a time (filter a rotating share
//     of the nodes, score, pick the best at random among equals, assume),
//     bindings and status updates in bounded background goroutines.
//
// Not implemented: preemption (a pod never evicts lower-priority pods),
// inter-pod affinity, topology spread constraints, volume filters, and
// priority order in the queue (pods are taken in arrival order).
package scheduler
