package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"synod/node/runtime"
)

// allocator is optionally implemented by a Network to list the pods that
// hold an IP, so IPs of pods deleted while the kubelet was down are freed.
type allocator interface {
	Allocated() map[string]net.IP
}

// cleanupOrphans removes the containers, network namespaces and
// directories of pods that are no longer bound to this node (deleted while
// the kubelet was down). Their IPs are released once the network is up.
func (k *Kubelet) cleanupOrphans(ctx context.Context) error {
	pods, err := k.podLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	known := map[types.UID]bool{}
	for _, p := range pods {
		known[p.UID] = true
	}
	states, err := k.rt.ListContainers(ctx, map[string]string{labelNode: k.cfg.NodeName})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	orphans := map[types.UID][]runtime.State{}
	for _, s := range states {
		uid := types.UID(s.Labels[runtime.LabelPodUID])
		if !known[uid] {
			orphans[uid] = append(orphans[uid], s)
		}
	}
	entries, err := os.ReadDir(filepath.Join(k.cfg.StateDir, "pods"))
	if err != nil {
		return fmt.Errorf("read pod dirs: %w", err)
	}
	for _, e := range entries {
		if uid := types.UID(e.Name()); !known[uid] {
			if _, ok := orphans[uid]; !ok {
				orphans[uid] = nil
			}
		}
	}
	var errs []error
	for uid, cs := range orphans {
		k.log.Info("cleaning up a pod deleted while the kubelet was down", "uid", uid, "containers", len(cs))
		for _, c := range cs {
			if err := k.rt.RemoveContainer(ctx, c.ID); err != nil {
				errs = append(errs, err)
			}
		}
		if err := k.cfg.NetNS.Delete(netnsName(uid)); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(k.podDir(uid)); err != nil {
			errs = append(errs, err)
		}
		logs, _ := filepath.Glob(filepath.Join(k.cfg.StateDir, "logs", "*_"+string(uid)))
		for _, l := range logs {
			if err := os.RemoveAll(l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if k.cfg.Network != nil {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			k.releaseOrphanIPs(ctx, orphans)
		}()
	}
	return errors.Join(errs...)
}

// releaseOrphanIPs waits for the network and tears down the orphans' (and
// any other unknown pod's) network.
func (k *Kubelet) releaseOrphanIPs(ctx context.Context, orphans map[types.UID][]runtime.State) {
	select {
	case <-ctx.Done():
		return
	case <-k.netReady:
	}
	n := k.net()
	ids := map[string]bool{}
	for uid := range orphans {
		ids[string(uid)] = true
	}
	if a, ok := n.(allocator); ok {
		pods, err := k.podLister.List(labels.Everything())
		if err == nil {
			known := map[string]bool{}
			for _, p := range pods {
				known[string(p.UID)] = true
			}
			for id := range a.Allocated() {
				if !known[id] {
					ids[id] = true
				}
			}
		}
	}
	for id := range ids {
		if err := n.Teardown(ctx, id, k.cfg.NetNS.Path(netnsName(types.UID(id)))); err != nil {
			k.log.Warn("release network of deleted pod", "uid", id, "err", err)
		}
	}
}
