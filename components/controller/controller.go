package controller

import (
	"context"
	"log/slog"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Options are the controller-manager's flags (kube-controller-manager's
// names and, where they make sense for a LAN appliance, its defaults).
type Options struct {
	// ClusterCIDR is the range node IPAM cuts podCIDRs from (--cluster-cidr).
	ClusterCIDR string
	// NodeCIDRMaskSize is the prefix length of each node's podCIDR.
	NodeCIDRMaskSize int
	// NodeMonitorPeriod is how often node lifecycle checks node leases.
	NodeMonitorPeriod time.Duration
	// NodeMonitorGracePeriod is how long a node may go without renewing its
	// Lease before it is marked Ready=Unknown and tainted unreachable.
	NodeMonitorGracePeriod time.Duration
	// ConcurrentSyncs is the number of workers per controller.
	ConcurrentSyncs int
}

// DefaultOptions are the defaults of `synod master`.
func DefaultOptions() Options {
	return Options{
		ClusterCIDR:            "10.244.0.0/16",
		NodeCIDRMaskSize:       24,
		NodeMonitorPeriod:      5 * time.Second,
		NodeMonitorGracePeriod: 40 * time.Second,
		ConcurrentSyncs:        5,
	}
}

// Context is what an InitFunc builds a controller from. Everything in it
// lives for one term of leadership.
type Context struct {
	// Client writes through the lease fence: once the lease may be lost,
	// writes fail with leader.ErrNotLeader.
	Client kubernetes.Interface
	// Informers is shared by all controllers of the term; InitFuncs ask it
	// for informers (which registers them) and the manager starts it.
	Informers informers.SharedInformerFactory
	// Recorder returns an event recorder that reports as component (for
	// example "replicaset-controller", as Kubernetes names them).
	Recorder func(component string) record.EventRecorder
	Logger   *slog.Logger
	Options  Options
}

// Runner is a built controller.
type Runner interface {
	// Run works until ctx is cancelled, then returns promptly.
	Run(ctx context.Context)
}

// InitFunc builds one controller. It must not start goroutines: only Run
// does, after the informers have synced.
type InitFunc func(c *Context) (Runner, error)

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context)

// Run calls f(ctx).
func (f RunnerFunc) Run(ctx context.Context) { f(ctx) }
