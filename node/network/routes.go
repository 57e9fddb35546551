package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the host-gw routes this package installs (the
// rtm_protocol field, `ip route show proto 83`), so stale ones are found
// without keeping state and nothing else's routes are ever touched.
const RouteProtocol = 83

// Peer is another worker: its spec.podCIDR and the node IP (InternalIP)
// its pods are reached through.
type Peer struct {
	PodCIDR string
	NodeIP  string
}

// SetRoutes makes the node's host-gw routes exactly peers: `ip route
// replace PODCIDR via NODEIP` for each, and deletes routes of ours to
// podCIDRs no longer listed. A peer with this node's own podCIDR, or an
// unparsable one, is skipped (and reported in the error); the others are
// still applied. Node IPs must be on a directly connected network.
func (n *Network) SetRoutes(ctx context.Context, peers []Peer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.hostMu.Lock()
	defer n.hostMu.Unlock()

	var errs []error
	want := map[string]netlink.Route{}
	for _, p := range peers {
		_, dst, err := net.ParseCIDR(p.PodCIDR)
		if err != nil || dst.IP.To4() == nil {
			errs = append(errs, fmt.Errorf("peer podCIDR %q: not an IPv4 CIDR", p.PodCIDR))
			continue
		}
		dst.IP = dst.IP.To4()
		gw := net.ParseIP(p.NodeIP).To4()
		if gw == nil {
			errs = append(errs, fmt.Errorf("peer %s: node IP %q is not IPv4", dst, p.NodeIP))
			continue
		}
		if dst.Contains(n.podCIDR.IP) || n.podCIDR.Contains(dst.IP) {
			if dst.String() != n.podCIDR.String() {
				errs = append(errs, fmt.Errorf("peer podCIDR %s overlaps own %s", dst, n.podCIDR))
			}
			continue
		}
		want[dst.String()] = netlink.Route{
			Dst:      dst,
			Gw:       gw,
			Protocol: RouteProtocol,
			Table:    unix.RT_TABLE_MAIN,
		}
	}

	h, err := n.nodeHandle()
	if err != nil {
		return fmt.Errorf("set routes: %w", err)
	}
	defer h.Delete()
	applied := 0
	for _, r := range want {
		r := r
		if err := h.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", r.Dst, r.Gw, err))
			continue
		}
		applied++
	}
	if err := n.deleteRoutesWith(h, want); err != nil {
		errs = append(errs, err)
	}
	n.metrics.routes.Set(float64(applied))

	// Without a ClusterCIDR the masquerade exemptions follow the peers.
	cidrs := make([]string, 0, len(want))
	for k := range want {
		cidrs = append(cidrs, k)
	}
	sort.Strings(cidrs)
	if n.cluster == nil && !equalStrings(cidrs, n.peerCIDRs) {
		n.peerCIDRs = cidrs
		if n.hostReady {
			if err := n.syncIPTablesLocked(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set routes: %w", err)
	}
	return nil
}

// deleteRoutes removes our routes whose destination is not in keep.
func (n *Network) deleteRoutes(keep map[string]netlink.Route) error {
	h, err := n.nodeHandle()
	if err != nil {
		return err
	}
	defer h.Delete()
	return n.deleteRoutesWith(h, keep)
}

func (n *Network) deleteRoutesWith(h *netlink.Handle, keep map[string]netlink.Route) error {
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if _, ok := keep[r.Dst.String()]; ok {
			continue
		}
		r := r
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
			continue
		}
		n.log.Info("removed stale route", "dst", r.Dst.String(), "via", r.Gw.String())
	}
	return errors.Join(errs...)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
