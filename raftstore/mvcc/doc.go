// Package mvcc is the in-memory multi-version key-value state that every
// master applies raft log entries to: etcd's data model (one global revision,
// per-key create/mod revision and version, history until compaction, leases
// that own keys) with no knowledge of raft or gRPC.
//
// Every mutating method is deterministic: given the same sequence of calls,
// every replica ends in the same state with the same revisions. Mutations are
// called from one goroutine (the raft FSM); reads may run concurrently.
package mvcc
