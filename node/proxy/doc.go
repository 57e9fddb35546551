// Package proxy is synod's service proxy for workers: a kube-proxy-style
// iptables proxier. It watches Services and EndpointSlices through the
// Kubernetes API (client-go informers) and programs the chains kube-proxy
// programs in iptables mode — KUBE-SERVICES, KUBE-NODEPORTS, KUBE-EXT-*,
// KUBE-SVC-*, KUBE-SVL-*, KUBE-SEP-*, KUBE-MARK-MASQ, KUBE-POSTROUTING in
// the nat table and KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-FORWARD in
// the filter table — with the same chain names (so kube-proxy knowledge and
// tooling carry over), random-probability load balancing, ClientIP session
// affinity and masquerade marks.
//
// Each sync writes the changed part of the rule set with exactly one
// `iptables-restore --noflush` (one atomic transaction per sync); the jumps
// from the built-in chains are maintained with go-iptables on full syncs.
// Syncs are coalesced and rate limited (MinSyncPeriod) and a full resync
// runs every SyncPeriod. Cleanup removes every KUBE-* chain and the jumps
// to them, for `synod worker --cleanup`.
//
// A Runner executes the iptables tools; NewRunner can enter a network
// namespace for every command, which is how the tests program a
// namespace they create while the proxier itself runs in the host one.
//
// Only IPv4 is programmed. Not implemented (kube-proxy has them):
// internalTrafficPolicy Local (treated as Cluster), LoadBalancer and
// external IPs, topology hints, conntrack cleanup of stale UDP flows, and
// the localhost NodePort (127.0.0.0/8 is excluded from KUBE-NODEPORTS, as
// with kube-proxy's --iptables-localhost-nodeports=false).
package proxy
