package main

import "synod/raftstore"

// restoreDataDir builds a fresh data dir for member name from a snapshot file
// written by `synod snapshot save` (or etcdctl), with initialCluster as the
// raft configuration; token must be the --initial-cluster-token the restored
// members will run with, since member IDs derive from it. It is a variable so
// tests can stub it.
var restoreDataDir = raftstore.RestoreDataDir
