// Package workload is the traffic of a chaos run: concurrent etcd-API
// clients (puts, linearizable gets, compare-and-swaps and deletes on a small
// key set so that operations contend), watchers on the whole key prefix that
// resume from their last revision + 1, and Kubernetes-API clients creating,
// updating and deleting ConfigMaps and scaling a Deployment. Everything is
// recorded in a chaos/history History for the checks in chaos/check.
package workload
