// Package check runs the checks of a chaos run on its recorded history and
// on the cluster after the final heal: linearizability of the etcd-API
// history (porcupine, with a model of etcd's KV), no acknowledged write
// lost, convergence of all members, watch ordering and completeness, never
// two active schedulers or controller-managers at once (from the masters'
// own log lines), Kubernetes objects surviving, and the recovery time after
// each fault. Each check is a Result: pass or fail with its evidence.
package check
