package daemonset

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"

	"synod/components/controller"
)

// rollingUpdate replaces out-of-date pods, as Kubernetes' rollingUpdate
// does. Without surge it deletes old pods while at most maxUnavailable
// nodes lack an available pod (unavailable old pods go at once); manage
// then creates their replacements. With surge it first starts a new pod
// next to an available old one, on at most maxSurge nodes at a time, and
// deletes the old pod once the new one is available.
func (dc *Controller) rollingUpdate(ctx context.Context, key string, ds *appsv1.DaemonSet, nodes []*v1.Node, hash string) error {
	pods := dc.byNode(ds)
	tmpl := templatePod(ds)
	desired := 0
	eligible := map[string]bool{}
	for _, n := range nodes {
		if run, _ := shouldRun(tmpl, n); run {
			desired++
			eligible[n.Name] = true
		}
	}
	unavailable, surge := maxUnavailable(ds, desired), maxSurge(ds, desired)
	now := time.Now()
	available := func(p *v1.Pod) bool { return controller.IsPodAvailable(p, ds.Spec.MinReadySeconds, now) }

	if surge == 0 {
		numUnavailable := 0
		var allowed, candidates []*v1.Pod
		// Every node that should run the daemon counts, including
		// those whose pod is terminating or not created yet.
		for node := range eligible {
			newPod, oldPod, ok := updatedPods(pods[node], hash)
			if !ok {
				numUnavailable++ // manage is sorting this node out
				continue
			}
			switch {
			case oldPod == nil && newPod == nil, oldPod != nil && newPod != nil:
				// manage creates the missing pod or drops the duplicate.
				numUnavailable++
			case newPod != nil:
				if !available(newPod) {
					numUnavailable++
				}
			case !available(oldPod):
				allowed = append(allowed, oldPod) // nothing to lose
			default:
				candidates = append(candidates, oldPod)
			}
		}
		oldestFirst(candidates)
		room := max(0, min(unavailable-numUnavailable, len(candidates)))
		return dc.syncNodes(ctx, key, ds, append(allowed, candidates[:room]...), nil, nil, hash)
	}

	numSurge := 0
	var del []*v1.Pod
	var allowedNodes, candidateNodes []string
	for node, onNode := range pods {
		newPod, oldPod, ok := updatedPods(onNode, hash)
		if !ok {
			numSurge++
			continue
		}
		switch {
		case oldPod == nil:
		case newPod == nil:
			switch {
			case !eligible[node]:
				// manage removes it
			case !available(oldPod):
				allowedNodes = append(allowedNodes, node)
			case numSurge < surge:
				candidateNodes = append(candidateNodes, node)
			}
		case !available(newPod):
			numSurge++
		default:
			del = append(del, oldPod)
		}
	}
	room := max(0, min(surge-numSurge, len(candidateNodes)))
	return dc.syncNodes(ctx, key, ds, del, nil, append(allowedNodes, candidateNodes[:room]...), hash)
}
