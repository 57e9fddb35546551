// Package network gives each pod on a worker its own network, with the
// semantics of the CNI bridge + host-local + host-gw setup but done directly
// with netlink and iptables, so the kubelet needs no plugin binaries:
//
//   - one Linux bridge per node (default synod0) whose address is the first
//     IP of the node's podCIDR and serves as every pod's default gateway;
//   - one veth pair per pod, the pod end named eth0 inside the pod's network
//     namespace, the node end enslaved to the bridge (hairpin on, so a pod can
//     reach itself through a service IP);
//   - pod IPs from the podCIDR, allocated round-robin like host-local and
//     persisted in StateDir so a restarted kubelet keeps its pods' IPs;
//   - host-gw routes to other workers' podCIDRs via their node IPs, marked
//     with a route protocol of their own so stale ones can be found and
//     removed;
//   - ip_forward and bridge-nf-call-iptables on, and iptables chains
//     SYNOD-POSTROUTING (masquerade traffic leaving the cluster) and
//     SYNOD-FORWARD (accept pod traffic even when FORWARD's policy is DROP).
//
// Everything can be done inside a network namespace other than the calling
// process's (Config.NetNS), which is how synod runs several simulated
// workers on one machine and how the tests avoid touching the host.
//
// NewNetNS and DeleteNetNS create and remove bind-mounted namespaces under
// /run/netns (compatible with `ip netns`), so runc can join a pod's
// namespace by path.
package network
