// Package scheduler is the default scheduler: it watches pods without a node
// whose spec.schedulerName is default-scheduler, filters and scores the nodes
// as kube-scheduler's default plugins do, and binds each pod through the
// pods/binding subresource.
package scheduler
