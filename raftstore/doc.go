// Package raftstore is the masters' replicated key-value store: an MVCC store
// (package mvcc) whose write-ahead log is a hashicorp/raft log, served to
// clients through the etcd v3 gRPC API so that etcdctl, etcd's Go client and
// the apiserver use it as they would use etcd.
//
// Writes become raft log entries; every member applies them in log order to
// its own MVCC store, so revisions are identical everywhere. A follower
// forwards writes to the leader over the peer port and never re-sends one
// whose fate is unknown. Linearizable reads are served by the leader after it
// confirms its leadership (Raft thesis §6.4); serializable reads come from the
// local replica. Watches are served by any member from its local store.
package raftstore
