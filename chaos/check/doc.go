// Package check runs the checks of a chaos run on its recorded history and
// on the cluster after the final heal, each a Result (pass or fail, with
// the evidence a person needs to see why):
//
//   - linearizability: porcupine on the etcd-API history, per key, with a
//     model of etcd's KV (values and mod revisions); writes of unknown
//     outcome stay open until the end, as in etcd's robustness tests, and
//     are resolved with the store's own replay where it has one;
//   - revisions: the global revision never goes back in real time and
//     acknowledged writes have distinct revisions (what a per-key model
//     cannot see);
//   - no-lost-writes and convergence: every member's replay of the key
//     prefix (a watch from the first revision) holds every acknowledged
//     write at its revision and nothing the history does not explain, and
//     all members agree on history, data and HashKV at one revision;
//   - watches: ordered, no duplicates, no gaps, resumed from last + 1;
//   - single-active-<component>: never two active schedulers or
//     controller-managers, from the masters' own log records;
//   - kube-objects: ConfigMaps and Deployments as their last acknowledged
//     op left them, on every apiserver;
//   - recovery-writes and recovery-kube-scheduler: time from each fault
//     until a write succeeds / the scheduler is active again (p50, p99, max).
package check
