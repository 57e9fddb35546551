package kubelet

import (
	"context"
	"reflect"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"

	"synod/node/network"
)

// routeSetter is optionally implemented by a Network (as
// *network.Network does) to route other nodes' podCIDRs via their node
// IPs (host-gw). The kubelet feeds it from a watch on all Nodes.
type routeSetter interface {
	SetRoutes(ctx context.Context, peers []network.Peer) error
}

// peers are the other nodes that have a podCIDR and an InternalIP.
func (k *Kubelet) peers(nodes corelisters.NodeLister) ([]network.Peer, error) {
	all, err := nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []network.Peer
	for _, n := range all {
		if n.Name == k.cfg.NodeName || n.Spec.PodCIDR == "" {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type == v1.NodeInternalIP {
				out = append(out, network.Peer{PodCIDR: n.Spec.PodCIDR, NodeIP: a.Address})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PodCIDR < out[j].PodCIDR })
	return out, nil
}

// routesLoop keeps the host-gw routes equal to the other nodes' podCIDRs,
// re-applying on every Node change (and retrying failures every 2 s).
func (k *Kubelet) routesLoop(ctx context.Context, nodes corelisters.NodeLister, kick <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-k.netReady:
	}
	rs, ok := k.net().(routeSetter)
	if !ok {
		return
	}
	var last []network.Peer
	applied := false
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-retry.C:
		}
		peers, err := k.peers(nodes)
		if err == nil && applied && reflect.DeepEqual(peers, last) {
			continue
		}
		if err == nil {
			err = rs.SetRoutes(ctx, peers)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k.log.Warn("set routes to other nodes' pods", "err", err)
			retry.Reset(2 * time.Second)
			continue
		}
		last, applied = peers, true
		k.log.Debug("routes to other nodes' pods set", "peers", len(peers))
	}
}
