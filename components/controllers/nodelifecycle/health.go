package nodelifecycle

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"synod/components/controller"
)

// Condition reasons and messages the controller writes, as Kubernetes does.
const (
	reasonUnknown      = "NodeStatusUnknown"
	messageUnknown     = "Kubelet stopped posting node status."
	reasonNeverUpdated = "NodeStatusNeverUpdated"
	messageNeverPosted = "Kubelet never posted node status."
)

// monitoredConditions are set to Unknown when a node goes silent.
var monitoredConditions = []v1.NodeConditionType{v1.NodeReady, v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure}

// nodeHealth is what the controller remembers of one node between passes.
type nodeHealth struct {
	// probe is when (on our clock) the node last showed a sign of life:
	// its Lease renewTime or Ready heartbeat changed, or we first saw it.
	probe     time.Time
	heartbeat time.Time // Ready lastHeartbeatTime as last seen
	renew     time.Time // Lease renewTime as last seen
	uid       types.UID
	// ready is the Ready status after the previous pass ("" before the
	// first), to report transitions once.
	ready v1.ConditionStatus
}

// monitor is one pass over all nodes.
func (nc *Controller) monitor(ctx context.Context) {
	nodes, err := nc.nodes.List(labels.Everything())
	if err != nil {
		nc.log.Error("list nodes", "err", err)
		return
	}
	now := time.Now()
	seen := make(map[string]bool, len(nodes))
	for _, node := range nodes {
		if ctx.Err() != nil {
			return
		}
		seen[node.Name] = true
		h := nc.health[node.Name]
		if h == nil {
			h = &nodeHealth{probe: now, uid: node.UID}
			nc.health[node.Name] = h
			nc.recordNodeEvent(node, v1.EventTypeNormal, "RegisteredNode", fmt.Sprintf("Registered Node %s in Controller", node.Name))
		}
		nc.observe(h, node, now)
		node, err := nc.checkHealth(ctx, h, node, now)
		if err != nil {
			if ctx.Err() == nil {
				nc.log.Warn("update node health", "node", node.Name, "err", err)
			}
			continue
		}
		ready := readyStatus(node)
		if h.ready == v1.ConditionTrue && ready != v1.ConditionTrue {
			nc.log.Info("node is not ready", "node", node.Name, "ready", ready)
			nc.nodeRecorder.Eventf(nodeRef(node), v1.EventTypeNormal, "NodeNotReady", "Node %s status is now: %s", node.Name, "NodeNotReady")
		} else if h.ready != "" && h.ready != v1.ConditionTrue && ready == v1.ConditionTrue {
			nc.log.Info("node is ready again", "node", node.Name)
		}
		h.ready = ready
		if ready != v1.ConditionTrue {
			nc.markPodsNotReady(ctx, node)
		}
		if err := nc.reconcileTaints(ctx, node, now); err != nil && ctx.Err() == nil {
			nc.log.Warn("update node taints", "node", node.Name, "err", err)
		}
	}
	for name := range nc.health {
		if h := nc.health[name]; !seen[name] {
			delete(nc.health, name)
			nc.recordNodeEvent(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: h.uid}}, v1.EventTypeNormal, "RemovingNode",
				fmt.Sprintf("Removing Node %s from Controller", name))
		}
	}
}

// observe moves h.probe to now when the node's Lease or Ready heartbeat has
// advanced since the last look.
func (nc *Controller) observe(h *nodeHealth, node *v1.Node, now time.Time) {
	if c := nodeCondition(node, v1.NodeReady); c != nil && !c.LastHeartbeatTime.Time.Equal(h.heartbeat) {
		h.heartbeat = c.LastHeartbeatTime.Time
		h.probe = now
	}
	lease, err := nc.leases.Leases(v1.NamespaceNodeLease).Get(node.Name)
	if err == nil && lease.Spec.RenewTime != nil && lease.Spec.RenewTime.Time.After(h.renew) {
		h.renew = lease.Spec.RenewTime.Time
		h.probe = now
	}
}

// checkHealth sets the node's conditions to Unknown once it has been silent
// longer than the grace period. It returns the node as it now stands.
func (nc *Controller) checkHealth(ctx context.Context, h *nodeHealth, node *v1.Node, now time.Time) (*v1.Node, error) {
	for attempt := 0; ; attempt++ {
		if now.Sub(h.probe) <= nc.grace {
			return node, nil
		}
		updated := node.DeepCopy()
		if !markUnknown(updated, metav1.NewTime(now)) {
			return node, nil
		}
		out, err := nc.client.CoreV1().Nodes().UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		if err == nil {
			nc.log.Info("node stopped posting status", "node", node.Name, "silent", now.Sub(h.probe).Round(time.Millisecond))
			nc.observe(h, out, now)
			return out, nil
		}
		if !apierrors.IsConflict(err) || attempt == 3 {
			return node, fmt.Errorf("nodelifecycle: mark node %s unknown: %w", node.Name, err)
		}
		// The node changed under us (perhaps its kubelet is back): look
		// again at the current object before deciding.
		fresh, err := nc.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return node, fmt.Errorf("nodelifecycle: get node %s: %w", node.Name, err)
		}
		node = fresh
		nc.observe(h, node, now)
	}
}

// markUnknown sets the monitored conditions to Unknown as the node
// lifecycle controller does; it reports whether anything changed.
func markUnknown(node *v1.Node, now metav1.Time) bool {
	changed := false
	for _, t := range monitoredConditions {
		c := nodeCondition(node, t)
		switch {
		case c == nil:
			node.Status.Conditions = append(node.Status.Conditions, v1.NodeCondition{
				Type: t, Status: v1.ConditionUnknown, Reason: reasonNeverUpdated, Message: messageNeverPosted,
				LastHeartbeatTime: node.CreationTimestamp, LastTransitionTime: now,
			})
			changed = true
		case c.Status != v1.ConditionUnknown:
			c.Status, c.Reason, c.Message, c.LastTransitionTime = v1.ConditionUnknown, reasonUnknown, messageUnknown, now
			changed = true
		}
	}
	return changed
}

// markPodsNotReady sets Ready=False on the node's pods (MarkPodsNotReady):
// whatever they were doing, nobody can vouch for them now.
func (nc *Controller) markPodsNotReady(ctx context.Context, node *v1.Node) {
	for _, p := range nc.podsOn(node.Name) {
		c := controller.PodCondition(p, v1.PodReady)
		if c == nil || c.Status != v1.ConditionTrue || ctx.Err() != nil {
			continue
		}
		cp := p.DeepCopy()
		c = controller.PodCondition(cp, v1.PodReady)
		c.Status, c.LastTransitionTime = v1.ConditionFalse, metav1.Now()
		if _, err := nc.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
			// A conflict or a vanished pod is looked at again next pass.
			nc.log.Debug("mark pod not ready", "pod", controller.Key(p), "err", err)
			continue
		}
		nc.nodeRecorder.Event(p, v1.EventTypeWarning, "NodeNotReady", "Node is not ready")
	}
}

func (nc *Controller) recordNodeEvent(node *v1.Node, eventType, reason, msg string) {
	nc.nodeRecorder.Eventf(nodeRef(node), eventType, reason, "Node %s event: %s", node.Name, msg)
}

// nodeRef is how Kubernetes refers to a node in events.
func nodeRef(node *v1.Node) *v1.ObjectReference {
	return &v1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}
}

func nodeCondition(node *v1.Node, t v1.NodeConditionType) *v1.NodeCondition {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == t {
			return &node.Status.Conditions[i]
		}
	}
	return nil
}

// readyStatus is the node's Ready status, "" if it has never posted one.
func readyStatus(node *v1.Node) v1.ConditionStatus {
	if c := nodeCondition(node, v1.NodeReady); c != nil {
		return c.Status
	}
	return ""
}
