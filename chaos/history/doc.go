// Package history is the record of a chaos run as the clients saw it: every
// etcd-API operation with its invocation and completion time, every watch
// event, every watch re-creation and every Kubernetes-API operation. It is
// plain data (JSON-serialisable) so that the checks in chaos/check can be
// run on it after the run, and re-run later from the report directory.
package history
