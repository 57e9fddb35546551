// Package chaos is the fault-injection harness behind `synod chaos run`: it
// starts a cluster of real `synod master` processes, each in a network
// namespace of its own wired to a host bridge so that partitions are real
// packet drops, runs the chaos/workload traffic against it, injects faults on
// a schedule derived only from a seed and the flags (SIGKILL, SIGSTOP,
// iptables partitions, majority loss, restarts), heals, and hands the
// recorded history to chaos/check. It writes a report directory and returns
// the checks' verdicts.
//
// Everything it creates on the machine (processes, namespaces, the bridge,
// veths, iptables rules, data dirs) is removed when Run returns, also when
// its context is cancelled; a machine-wide lock keeps two runs apart, and a
// run that was killed outright is cleaned up by the next one. It needs root,
// nsenter, ip and iptables.
//
// RunRemote (remote*.go) runs the same workload and checks against a
// cluster ansible/site.yml deployed, from the control host: it kills
// masters' services through SSH and, on the nspawn testbed, stops, pauses
// and cuts off whole machines, and it leaves the cluster healed.
package chaos
