// Package iptbackend picks the iptables backend a worker's rules go into,
// nf_tables ("nft") or the legacy xtables ("legacy"), and names the
// binaries of each, so the pod network's masquerade chains and the service
// proxy's chains always land in the same one.
//
// Both backends can be active in one kernel, and rules in the wrong one are
// invisible to the other's tools, so the choice follows what the host
// already uses, as Kubernetes' iptables-wrapper does: the backend holding
// more rules wins. On a host (or network namespace) with no rules in
// either, it picks legacy: one iptables-restore of a large service set
// (1,000 services x 10 endpoints, ~33,500 rules) takes about a second with
// iptables-legacy but tens of seconds with Debian 12's iptables-nft, and a
// worker restores its whole rule set at startup. An operator can force
// either with the worker's --iptables-backend flag.
package iptbackend
