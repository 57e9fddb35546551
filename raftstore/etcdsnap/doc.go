// Package etcdsnap converts between synod's key-value state and etcd's
// snapshot file format, so that `synod snapshot save` and the
// Maintenance.Snapshot stream produce files real etcd tooling accepts
// (`etcdctl snapshot status`, `etcdctl/etcdutl snapshot restore`), and
// `synod snapshot restore` can load files written by real etcd.
//
// An etcd snapshot is an etcd backend bbolt database followed by the sha256
// of that database (32 bytes; bbolt files are page-sized, so a file whose
// size % 512 == 32 carries the hash). Its layout, mirrored here:
//
//   - bucket "key": key = revision bytes: 8-byte big-endian main, '_',
//     8-byte big-endian sub, plus a trailing 't' for a tombstone; value =
//     mvccpb.KeyValue marshaled (for a tombstone only Key is set).
//   - bucket "meta": "consistent_index" and "term" (8-byte big-endian
//     uint64), "scheduledCompactRev" / "finishedCompactRev" (revision bytes
//     with sub 0), and synod's own "synod_rev" (8-byte big-endian store
//     revision, since a compacted store's revision can exceed the last
//     record's).
//   - bucket "lease": key = 8-byte big-endian lease ID; value = leasepb.Lease
//     {ID=1, TTL=2, RemainingTTL=3}, hand-encoded with protowire so that this
//     package does not depend on the etcd server module.
//   - empty buckets "alarm", "auth", "authRoles", "authUsers", "cluster",
//     "members", "members_removed", as a fresh etcd backend has them.
//
// The package is standalone: it knows nothing of synod's mvcc store. Its
// Record and Lease types have the same fields as mvcc.Record and mvcc.Lease,
// so callers convert with plain conversions (etcdsnap.Record(r)), and
// WriteStream takes records from an iterator shaped like mvcc.View.Records.
//
// Read checks the file's structure itself (boltcheck.go) before opening it
// with bbolt, because bbolt crashes the process, in goroutines no caller can
// recover, on some corrupt files.
package etcdsnap
