package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"synod/node/iptbackend"
)

// DefaultBridgeName is the bridge used when Config.BridgeName is empty.
const DefaultBridgeName = "synod0"

// DefaultMTU is the pod and bridge MTU when Config.MTU is zero.
const DefaultMTU = 1500

// podIfName is the pod end of the veth pair inside the pod's namespace.
const podIfName = "eth0"

// Config configures a node's pod network.
type Config struct {
	// PodCIDR is the node's spec.podCIDR (IPv4, at most /29). The bridge
	// gets its first IP, pods get the rest.
	PodCIDR string
	// ClusterCIDR, if set, is the whole pod network (the controller-manager's
	// --cluster-cidr). Pod traffic to it is never masqueraded. Without it,
	// the own and peers' podCIDRs are exempted one by one.
	ClusterCIDR string
	// BridgeName defaults to synod0.
	BridgeName string
	// MTU of the bridge and the veth pairs; defaults to 1500.
	MTU int
	// StateDir holds the IP allocations (required); keep it across kubelet
	// restarts so pods keep their IPs.
	StateDir string
	// NetNS is the path of the network namespace that plays the node's host
	// namespace (bridge, routes, iptables). Empty means the namespace of the
	// calling process. synod uses it for workers simulated on one machine.
	NetNS string
	// IPTables are the iptables tools to use (the same backend as the
	// service proxy's); zero detects the backend in NetNS.
	IPTables iptbackend.Tools
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer, if set, receives the package's metrics.
	Registerer prometheus.Registerer
}

// Network programs one node's pod network. Its methods are safe for
// concurrent use.
type Network struct {
	cfg     Config
	log     *slog.Logger
	podCIDR *net.IPNet
	cluster *net.IPNet // nil if not configured
	gateway net.IP
	ipam    *ipam
	ipt     *iptablesRunner
	metrics *metrics

	// podMu is held shared by Setup and Teardown and exclusively by
	// Cleanup, so Cleanup never deletes the bridge under a pod being set up
	// while pod setups still run in parallel. Taken before hostMu.
	podMu sync.RWMutex
	// hostMu serialises changes to node-wide state: the bridge, sysctls,
	// iptables chains and routes.
	hostMu    sync.Mutex
	hostReady bool     // sysctls and iptables done once in this process
	peerCIDRs []string // exempted from masquerade when ClusterCIDR is unset
}

// New validates cfg and loads the persisted IP allocations. It changes
// nothing in the kernel; EnsureHost or the first Setup does.
func New(cfg Config) (*Network, error) {
	if cfg.BridgeName == "" {
		cfg.BridgeName = DefaultBridgeName
	}
	if len(cfg.BridgeName) > unix.IFNAMSIZ-1 {
		return nil, fmt.Errorf("network: bridge name %q too long", cfg.BridgeName)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("network: invalid MTU %d", cfg.MTU)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("network: StateDir is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "network")
	_, podCIDR, err := net.ParseCIDR(cfg.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("network: podCIDR %q: %w", cfg.PodCIDR, err)
	}
	if podCIDR.IP.To4() == nil {
		return nil, fmt.Errorf("network: podCIDR %s is not IPv4", podCIDR)
	}
	podCIDR.IP = podCIDR.IP.To4()
	var cluster *net.IPNet
	if cfg.ClusterCIDR != "" {
		if _, cluster, err = net.ParseCIDR(cfg.ClusterCIDR); err != nil {
			return nil, fmt.Errorf("network: clusterCIDR %q: %w", cfg.ClusterCIDR, err)
		}
		if !cluster.Contains(podCIDR.IP) {
			return nil, fmt.Errorf("network: podCIDR %s is outside clusterCIDR %s", podCIDR, cluster)
		}
	}
	if cfg.NetNS != "" && !isNetNS(cfg.NetNS) {
		return nil, fmt.Errorf("network: %s is not a network namespace", cfg.NetNS)
	}
	a, err := newIPAM(cfg.StateDir, podCIDR, log)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	ipt, err := newIPTablesRunner(cfg.NetNS, cfg.IPTables)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	n := &Network{
		cfg:     cfg,
		log:     log,
		podCIDR: podCIDR,
		cluster: cluster,
		gateway: u32ToIP4(ip4ToU32(podCIDR.IP) + 1),
		ipam:    a,
		ipt:     ipt,
	}
	if n.metrics, err = newMetrics(cfg.Registerer, a); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	return n, nil
}

// Gateway returns the bridge's IP, the pods' default gateway.
func (n *Network) Gateway() net.IP { return dupIP(n.gateway) }

// PodCIDR returns the node's pod CIDR.
func (n *Network) PodCIDR() *net.IPNet {
	return &net.IPNet{IP: dupIP(n.podCIDR.IP), Mask: append(net.IPMask(nil), n.podCIDR.Mask...)}
}

// Allocated returns the pods that hold an IP (pod ID -> IP). A restarted
// kubelet can Teardown the ones whose pods no longer exist.
func (n *Network) Allocated() map[string]net.IP { return n.ipam.snapshot() }

// PodIP returns podID's allocated IP, or nil.
func (n *Network) PodIP(podID string) net.IP { return n.ipam.lookup(podID) }

// EnsureHost creates the bridge, enables forwarding and bridge netfilter
// and installs the iptables chains. Setup calls it; the kubelet may call it
// at start so masquerading is in place before the first pod.
func (n *Network) EnsureHost(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.hostMu.Lock()
	defer n.hostMu.Unlock()
	return n.ensureHostLocked(ctx)
}

func (n *Network) ensureHostLocked(ctx context.Context) error {
	// The bridge is checked every time: something may have deleted it.
	if _, err := n.ensureBridge(); err != nil {
		return err
	}
	if n.hostReady {
		return nil
	}
	if err := n.ensureSysctls(); err != nil {
		return err
	}
	if err := n.syncIPTablesLocked(ctx); err != nil {
		return err
	}
	n.hostReady = true
	return nil
}

// nodeHandle returns a netlink handle in the node's namespace.
func (n *Network) nodeHandle() (*netlink.Handle, error) {
	if n.cfg.NetNS == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return h, nil
	}
	return handleAt(n.cfg.NetNS)
}

func handleAt(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return h, nil
}

// ensureBridge creates the bridge if missing and makes sure it is up and
// has exactly the gateway address.
func (n *Network) ensureBridge() (netlink.Link, error) {
	h, err := n.nodeHandle()
	if err != nil {
		return nil, err
	}
	defer h.Delete()
	name := n.cfg.BridgeName
	link, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.MTU = n.cfg.MTU
		// A fixed MAC: otherwise the bridge takes the lowest MAC of its
		// ports, which changes as pods come and go and leaves pods with a
		// stale ARP entry for their gateway.
		attrs.HardwareAddr = macFor(n.gateway)
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if link, err = h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
		n.log.Info("created bridge", "bridge", name, "gateway", n.gateway.String())
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("bridge %s: existing link is a %s, not a bridge", name, link.Type())
	}
	want := &net.IPNet{IP: n.gateway, Mask: n.podCIDR.Mask}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: list addresses: %w", name, err)
	}
	have := false
	for _, a := range addrs {
		if a.IPNet.String() == want.String() {
			have = true
			continue
		}
		// A leftover address from an earlier podCIDR would route part of
		// the cluster into this bridge.
		a := a
		if err := h.AddrDel(link, &a); err != nil {
			return nil, fmt.Errorf("bridge %s: remove stale address %s: %w", name, a.IPNet, err)
		}
	}
	if !have {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: want}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("bridge %s: add %s: %w", name, want, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bridge %s: up: %w", name, err)
		}
	}
	return link, nil
}

// ensureSysctls turns on forwarding, and makes bridged traffic go through
// iptables so service DNAT works between pods on the same bridge.
func (n *Network) ensureSysctls() error {
	return inNetNS(n.cfg.NetNS, func() error {
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		const brnf = "net/bridge/bridge-nf-call-iptables"
		if _, err := os.Stat("/proc/sys/" + brnf); errors.Is(err, os.ErrNotExist) {
			// br_netfilter is not loaded; without it, pod-to-service traffic
			// between pods on one bridge skips kube-proxy's DNAT on the way
			// back. Pod-to-pod networking still works.
			n.log.Warn("br_netfilter not loaded; bridged traffic bypasses iptables (modprobe br_netfilter)")
			return nil
		}
		return writeSysctl(brnf, "1")
	})
}

func writeSysctl(key, value string) error {
	path := "/proc/sys/" + key
	cur, err := os.ReadFile(path)
	if err == nil && string(cur) == value+"\n" {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// Setup gives the pod whose network namespace is at netnsPath an eth0 with
// an IP from the podCIDR and a default route via the bridge, and brings up
// its lo. Calling it again for a pod that is already set up returns the
// same IP without changing anything.
func (n *Network) Setup(ctx context.Context, podID, netnsPath string) (net.IP, error) {
	start := time.Now()
	ip, err := n.setup(ctx, podID, netnsPath)
	n.metrics.observeSetup(start, err)
	if err != nil {
		return nil, fmt.Errorf("network setup of pod %s: %w", podID, err)
	}
	return ip, nil
}

func (n *Network) setup(ctx context.Context, podID, netnsPath string) (net.IP, error) {
	if podID == "" {
		return nil, errors.New("empty pod ID")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	podNS, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open pod netns: %w", err)
	}
	defer podNS.Close()

	n.podMu.RLock()
	defer n.podMu.RUnlock()
	n.hostMu.Lock()
	err = n.ensureHostLocked(ctx)
	n.hostMu.Unlock()
	if err != nil {
		return nil, err
	}

	ip, fresh, err := n.ipam.allocate(podID)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		// A failed first Setup must not leak the IP; one for a pod that
		// already had it keeps it (the pod may still be using it).
		if !ok && fresh {
			if err := n.ipam.release(podID); err != nil {
				n.log.Error("release IP after failed setup", "pod", podID, "err", err)
			}
		}
	}()

	nodeH, err := n.nodeHandle()
	if err != nil {
		return nil, err
	}
	defer nodeH.Delete()
	podH, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in pod netns: %w", err)
	}
	defer podH.Delete()

	bridge, err := nodeH.LinkByName(n.cfg.BridgeName)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", n.cfg.BridgeName, err)
	}
	hostName := hostVethName(podID)
	podAddr := &net.IPNet{IP: ip, Mask: n.podCIDR.Mask}

	if n.alreadySetUp(nodeH, podH, bridge, hostName, podAddr) {
		ok = true
		return ip, nil
	}

	// Start from a clean slate: a half-done earlier attempt may have left
	// either end behind.
	if l, err := nodeH.LinkByName(hostName); err == nil {
		if err := nodeH.LinkDel(l); err != nil {
			return nil, fmt.Errorf("remove stale %s: %w", hostName, err)
		}
	}
	if l, err := podH.LinkByName(podIfName); err == nil {
		if err := podH.LinkDel(l); err != nil {
			return nil, fmt.Errorf("remove stale pod %s: %w", podIfName, err)
		}
	}

	attrs := netlink.NewLinkAttrs()
	attrs.Name = hostName
	attrs.MTU = n.cfg.MTU
	veth := &netlink.Veth{
		LinkAttrs: attrs,
		PeerName:  podIfName,
		// A MAC derived from the IP means a reused IP comes back with the
		// same MAC, so neighbours' ARP caches are never wrong.
		PeerHardwareAddr: macFor(ip),
		PeerNamespace:    netlink.NsFd(int(podNS)),
	}
	if err := nodeH.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", hostName, err)
	}
	cleanupVeth := func() {
		if l, err := nodeH.LinkByName(hostName); err == nil {
			_ = nodeH.LinkDel(l)
		}
	}
	if err := n.configurePod(podH, podAddr); err != nil {
		cleanupVeth()
		return nil, err
	}
	host, err := nodeH.LinkByName(hostName)
	if err != nil {
		cleanupVeth()
		return nil, fmt.Errorf("veth %s: %w", hostName, err)
	}
	if err := nodeH.LinkSetMaster(host, bridge); err != nil {
		cleanupVeth()
		return nil, fmt.Errorf("attach %s to %s: %w", hostName, n.cfg.BridgeName, err)
	}
	// Hairpin lets a pod reach itself through a service IP that kube-proxy
	// DNATs back to the pod.
	if err := nodeH.LinkSetHairpin(host, true); err != nil {
		cleanupVeth()
		return nil, fmt.Errorf("hairpin on %s: %w", hostName, err)
	}
	if err := nodeH.LinkSetUp(host); err != nil {
		cleanupVeth()
		return nil, fmt.Errorf("up %s: %w", hostName, err)
	}
	ok = true
	n.log.Debug("pod network set up", "pod", podID, "ip", ip.String(), "veth", hostName)
	return ip, nil
}

// alreadySetUp reports whether the pod's eth0 has the allocated address and
// its host end sits on the bridge (a retried or re-adopted Setup).
func (n *Network) alreadySetUp(nodeH, podH *netlink.Handle, bridge netlink.Link, hostName string, podAddr *net.IPNet) bool {
	eth, err := podH.LinkByName(podIfName)
	if err != nil {
		return false
	}
	addrs, err := podH.AddrList(eth, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	found := false
	for _, a := range addrs {
		if a.IPNet.String() == podAddr.String() {
			found = true
		}
	}
	if !found || eth.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	host, err := nodeH.LinkByName(hostName)
	if err != nil {
		return false
	}
	return host.Attrs().MasterIndex == bridge.Attrs().Index && host.Attrs().Flags&net.FlagUp != 0
}

// configurePod addresses and raises eth0 and lo inside the pod namespace
// and routes everything via the bridge.
func (n *Network) configurePod(podH *netlink.Handle, podAddr *net.IPNet) error {
	lo, err := podH.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("pod lo: %w", err)
	}
	if err := podH.LinkSetUp(lo); err != nil {
		return fmt.Errorf("pod lo up: %w", err)
	}
	eth, err := podH.LinkByName(podIfName)
	if err != nil {
		return fmt.Errorf("pod %s: %w", podIfName, err)
	}
	if err := podH.AddrAdd(eth, &netlink.Addr{IPNet: podAddr}); err != nil {
		return fmt.Errorf("pod %s address %s: %w", podIfName, podAddr, err)
	}
	if err := podH.LinkSetUp(eth); err != nil {
		return fmt.Errorf("pod %s up: %w", podIfName, err)
	}
	def := &netlink.Route{
		LinkIndex: eth.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        n.gateway,
	}
	if err := podH.RouteReplace(def); err != nil {
		return fmt.Errorf("pod default route via %s: %w", n.gateway, err)
	}
	return nil
}

// Teardown removes the pod's veth pair and releases its IP. It is
// idempotent and works whether or not the pod's namespace still exists.
func (n *Network) Teardown(ctx context.Context, podID, netnsPath string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if podID == "" {
		return errors.New("network teardown: empty pod ID")
	}
	n.podMu.RLock()
	defer n.podMu.RUnlock()
	var errs []error
	nodeH, err := n.nodeHandle()
	if err != nil {
		return fmt.Errorf("network teardown of pod %s: %w", podID, err)
	}
	defer nodeH.Delete()
	hostName := hostVethName(podID)
	// Deleting one end of a veth pair deletes both.
	if l, err := nodeH.LinkByName(hostName); err == nil {
		if err := nodeH.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s: %w", hostName, err))
		}
	}
	// If the host end was already gone, the pod end may still be there
	// (moved or renamed by someone); remove it so a new Setup starts clean.
	if netnsPath != "" && isNetNS(netnsPath) {
		if podH, err := handleAt(netnsPath); err == nil {
			if l, err := podH.LinkByName(podIfName); err == nil {
				if err := podH.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
					errs = append(errs, fmt.Errorf("delete pod %s: %w", podIfName, err))
				}
			}
			podH.Delete()
		}
	}
	if err := n.ipam.release(podID); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network teardown of pod %s: %w", podID, err)
	}
	n.log.Debug("pod network torn down", "pod", podID)
	return nil
}

// Cleanup removes everything this package put on the node: the pods' veths
// on the bridge, the bridge, the host-gw routes, the iptables chains and the
// IP allocations (for `synod worker --cleanup`). Sysctls are left as they are.
func (n *Network) Cleanup(ctx context.Context) error {
	n.podMu.Lock()
	defer n.podMu.Unlock()
	n.hostMu.Lock()
	defer n.hostMu.Unlock()
	n.hostReady = false
	n.peerCIDRs = nil
	var errs []error
	if err := n.deleteLinks(); err != nil {
		errs = append(errs, err)
	}
	if err := n.deleteRoutes(nil); err != nil {
		errs = append(errs, err)
	}
	if err := n.ipt.cleanup(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := n.ipam.remove(); err != nil {
		errs = append(errs, err)
	}
	n.metrics.routes.Set(0)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network cleanup: %w", err)
	}
	n.log.Info("pod network cleaned up", "bridge", n.cfg.BridgeName)
	return nil
}

func (n *Network) deleteLinks() error {
	h, err := n.nodeHandle()
	if err != nil {
		return err
	}
	defer h.Delete()
	br, err := h.LinkByName(n.cfg.BridgeName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("bridge %s: %w", n.cfg.BridgeName, err)
	}
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if _, isVeth := l.(*netlink.Veth); isVeth && l.Attrs().MasterIndex == br.Attrs().Index {
			if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
			}
		}
	}
	if err := h.LinkDel(br); err != nil && !errors.Is(err, unix.ENODEV) {
		errs = append(errs, fmt.Errorf("delete bridge %s: %w", n.cfg.BridgeName, err))
	}
	return errors.Join(errs...)
}

// hostVethName derives the node-side veth name from the pod ID, so Teardown
// finds it without any state: "syn" + 12 hex digits (15 bytes, IFNAMSIZ-1).
func hostVethName(podID string) string {
	sum := sha256.Sum256([]byte(podID))
	return "syn" + hex.EncodeToString(sum[:6])
}

// macFor returns the locally administered MAC 0a:58:a.b.c.d for an IPv4
// address (the scheme ovn-kubernetes and kubenet use).
func macFor(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	return net.HardwareAddr{0x0a, 0x58, v4[0], v4[1], v4[2], v4[3]}
}

func dupIP(ip net.IP) net.IP { return append(net.IP(nil), ip...) }
