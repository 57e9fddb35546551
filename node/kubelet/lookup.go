package kubelet

import (
	"context"
	"fmt"
	"os"
	"sort"

	"synod/node/runtime"
)

// ErrContainerNotFound is wrapped by FindContainer when the container is
// not on this node; it wraps os.ErrNotExist, which the kubelet server
// answers with 404.
var ErrContainerNotFound = fmt.Errorf("container not found: %w", os.ErrNotExist)

// FindContainer returns the runtime container behind container of pod
// namespace/pod on this node, for the kubelet server (kubectl logs and
// exec): the current attempt, or with previous the one before it. It asks
// the runtime rather than the pod workers, so it needs no locks and also
// finds containers of pods being torn down. When a pod was recreated under
// the same name, the newest pod's containers win.
func (k *Kubelet) FindContainer(ctx context.Context, namespace, pod, container string, previous bool) (runtime.State, error) {
	states, err := k.rt.ListContainers(ctx, map[string]string{
		labelPodNamespace:          namespace,
		labelPodName:               pod,
		runtime.LabelContainerName: container,
	})
	if err != nil {
		return runtime.State{}, fmt.Errorf("list containers of pod %s/%s: %w", namespace, pod, err)
	}
	if len(states) == 0 {
		return runtime.State{}, fmt.Errorf("container %q in pod %s/%s: %w", container, namespace, pod, ErrContainerNotFound)
	}
	// The newest container tells which pod UID is current.
	sort.Slice(states, func(i, j int) bool { return states[i].CreatedAt.After(states[j].CreatedAt) })
	uid := states[0].Labels[runtime.LabelPodUID]
	var mine []runtime.State
	for _, s := range states {
		if s.Labels[runtime.LabelPodUID] == uid {
			mine = append(mine, s)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return restartCountOf(mine[i]) > restartCountOf(mine[j]) })
	if !previous {
		return mine[0], nil
	}
	if len(mine) < 2 {
		return runtime.State{}, fmt.Errorf("previous terminated container %q in pod %q: %w", container, pod, ErrContainerNotFound)
	}
	return mine[1], nil
}
