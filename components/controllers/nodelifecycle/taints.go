package nodelifecycle

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// conditionTaints maps a node condition in a given status to the NoSchedule
// taint Kubernetes' TaintNodesByCondition puts on the node.
var conditionTaints = []struct {
	cond   v1.NodeConditionType
	status v1.ConditionStatus
	key    string
}{
	{v1.NodeReady, v1.ConditionFalse, v1.TaintNodeNotReady},
	{v1.NodeReady, v1.ConditionUnknown, v1.TaintNodeUnreachable},
	{v1.NodeMemoryPressure, v1.ConditionTrue, v1.TaintNodeMemoryPressure},
	{v1.NodeDiskPressure, v1.ConditionTrue, v1.TaintNodeDiskPressure},
	{v1.NodeNetworkUnavailable, v1.ConditionTrue, v1.TaintNodeNetworkUnavailable},
	{v1.NodePIDPressure, v1.ConditionTrue, v1.TaintNodePIDPressure},
}

// managed reports whether the controller owns taint: it adds and removes
// those itself and leaves every other taint alone.
func managed(t v1.Taint) bool {
	switch t.Effect {
	case v1.TaintEffectNoExecute:
		return t.Key == v1.TaintNodeNotReady || t.Key == v1.TaintNodeUnreachable
	case v1.TaintEffectNoSchedule:
		if t.Key == v1.TaintNodeUnschedulable {
			return true
		}
		for _, ct := range conditionTaints {
			if ct.key == t.Key {
				return true
			}
		}
	}
	return false
}

// desiredTaints lists the managed taints node should carry now.
func desiredTaints(node *v1.Node) []v1.Taint {
	var want []v1.Taint
	switch readyStatus(node) {
	case v1.ConditionFalse:
		want = append(want, v1.Taint{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoExecute})
	case v1.ConditionUnknown:
		want = append(want, v1.Taint{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoExecute})
	}
	for _, ct := range conditionTaints {
		if c := nodeCondition(node, ct.cond); c != nil && c.Status == ct.status {
			want = append(want, v1.Taint{Key: ct.key, Effect: v1.TaintEffectNoSchedule})
		}
	}
	if node.Spec.Unschedulable {
		want = append(want, v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule})
	}
	return want
}

// mergeTaints returns have with the managed taints replaced by want; taints
// already present keep their timeAdded, new NoExecute ones get now. It
// reports whether the result differs from have.
func mergeTaints(have, want []v1.Taint, now time.Time) ([]v1.Taint, bool) {
	has := func(list []v1.Taint, t v1.Taint) bool {
		for i := range list {
			if list[i].MatchTaint(&t) {
				return true
			}
		}
		return false
	}
	out := make([]v1.Taint, 0, len(have)+len(want))
	changed := false
	for _, t := range have {
		if managed(t) && !has(want, t) {
			changed = true
			continue
		}
		out = append(out, t)
	}
	for _, t := range want {
		if has(have, t) {
			continue
		}
		if t.Effect == v1.TaintEffectNoExecute {
			at := metav1.NewTime(now)
			t.TimeAdded = &at
		}
		out = append(out, t)
		changed = true
	}
	return out, changed
}

// reconcileTaints brings the node's managed taints in line with its
// conditions.
func (nc *Controller) reconcileTaints(ctx context.Context, node *v1.Node, now time.Time) error {
	if _, changed := mergeTaints(node.Spec.Taints, desiredTaints(node), now); !changed {
		return nil
	}
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := node
		if !first {
			var err error
			if cur, err = nc.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		first = false
		taints, changed := mergeTaints(cur.Spec.Taints, desiredTaints(cur), now)
		if !changed {
			return nil
		}
		cp := cur.DeepCopy()
		cp.Spec.Taints = taints
		if _, err := nc.client.CoreV1().Nodes().Update(ctx, cp, metav1.UpdateOptions{}); err != nil {
			return err
		}
		nc.log.Info("node taints updated", "node", node.Name, "taints", taintStrings(taints))
		return nil
	})
	if err != nil {
		return fmt.Errorf("nodelifecycle: taint node %s: %w", node.Name, err)
	}
	return nil
}

// noExecuteTaints are the taints that evict pods.
func noExecuteTaints(node *v1.Node) []v1.Taint {
	var out []v1.Taint
	for _, t := range node.Spec.Taints {
		if t.Effect == v1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

// sameTaints compares two taint lists, timeAdded included.
func sameTaints(a, b []v1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].MatchTaint(&b[i]) || a[i].Value != b[i].Value || !a[i].TimeAdded.Equal(b[i].TimeAdded) {
			return false
		}
	}
	return true
}

func taintStrings(ts []v1.Taint) []string {
	out := make([]string, len(ts))
	for i := range ts {
		out[i] = ts[i].ToString()
	}
	return out
}
