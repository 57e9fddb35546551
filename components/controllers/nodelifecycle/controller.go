package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
)

// Event sources, as Kubernetes names them.
const (
	nodeComponent     = "node-controller"
	evictionComponent = "taint-eviction-controller"
)

// podsByNode indexes the shared pod informer by spec.nodeName. The name is
// this package's own so that another controller's index cannot clash.
const podsByNode = "nodelifecycle/nodeName"

// Controller watches node health and evicts pods from tainted nodes.
type Controller struct {
	// kick asks for a monitor pass now: a node's conditions or
	// unschedulable flag changed, and its NoSchedule taints must follow at
	// once (as Kubernetes' TaintNodesByCondition does on node updates), not
	// one monitor period later, or the scheduler keeps a node that just
	// became Ready out for seconds.
	kick chan struct{}

	client  kubernetes.Interface
	log     *slog.Logger
	period  time.Duration
	grace   time.Duration
	workers int

	nodeRecorder  record.EventRecorder
	evictRecorder record.EventRecorder

	nodes  corelisters.NodeLister
	leases coordinationlisters.LeaseLister
	pods   corelisters.PodLister
	podIdx cache.Indexer

	// health is touched only by the monitor loop.
	health map[string]*nodeHealth

	// evictions holds pod keys whose eviction is due or to be re-checked.
	evictions workqueue.TypedRateLimitingInterface[string]

	// taintSeenMu guards taintSeen: when this controller first saw a
	// NoExecute taint that carries no timeAdded (node/key:effect), the
	// start of its tolerationSeconds.
	taintSeenMu sync.Mutex
	taintSeen   map[string]time.Time
}

// New builds the controller and registers its informers.
func New(c *controller.Context) (controller.Runner, error) {
	if c.Options.NodeMonitorPeriod <= 0 || c.Options.NodeMonitorGracePeriod <= 0 {
		return nil, fmt.Errorf("nodelifecycle: node monitor period (%s) and grace period (%s) must be positive",
			c.Options.NodeMonitorPeriod, c.Options.NodeMonitorGracePeriod)
	}
	nodeInf := c.Informers.Core().V1().Nodes()
	podInf := c.Informers.Core().V1().Pods()
	leaseInf := c.Informers.Coordination().V1().Leases()
	workers := c.Options.ConcurrentSyncs
	if workers <= 0 {
		workers = 1
	}
	nc := &Controller{
		client:        c.Client,
		log:           c.Logger.With("controller", "nodelifecycle"),
		period:        c.Options.NodeMonitorPeriod,
		kick:          make(chan struct{}, 1),
		grace:         c.Options.NodeMonitorGracePeriod,
		workers:       workers,
		nodeRecorder:  c.Recorder(nodeComponent),
		evictRecorder: c.Recorder(evictionComponent),
		nodes:         nodeInf.Lister(),
		leases:        leaseInf.Lister(),
		pods:          podInf.Lister(),
		podIdx:        podInf.Informer().GetIndexer(),
		health:        map[string]*nodeHealth{},
		evictions: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "taint-eviction"}),
		taintSeen: map[string]time.Time{},
	}
	err := podInf.Informer().AddIndexers(cache.Indexers{podsByNode: func(obj any) ([]string, error) {
		if p, ok := obj.(*v1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}})
	if err != nil {
		return nil, fmt.Errorf("nodelifecycle: pod index: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    nc.podChanged,
		UpdateFunc: func(_, obj any) { nc.podChanged(obj) },
	}); err != nil {
		return nil, fmt.Errorf("nodelifecycle: pod handler: %w", err)
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: nc.nodeChanged,
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*v1.Node)
			n, ok2 := obj.(*v1.Node)
			if ok1 && ok2 && (o.Spec.Unschedulable != n.Spec.Unschedulable || conditionsChanged(o, n)) {
				select {
				case nc.kick <- struct{}{}:
				default:
				}
			}
			if ok1 && ok2 && sameTaints(noExecuteTaints(o), noExecuteTaints(n)) {
				return
			}
			nc.nodeChanged(obj)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*v1.Node); ok {
				nc.forgetUntimedTaints(n, true)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("nodelifecycle: node handler: %w", err)
	}
	// The lease informer only needs to exist: the monitor loop reads it.
	leaseInf.Informer()
	return nc, nil
}

// Run monitors node health every period and evicts pods until ctx ends.
func (nc *Controller) Run(ctx context.Context) {
	nc.log.Info("node lifecycle controller running", "period", nc.period, "grace", nc.grace)
	var wg sync.WaitGroup
	for range nc.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for nc.processEviction(ctx) {
			}
		}()
	}
	go func() {
		<-ctx.Done()
		nc.evictions.ShutDown()
	}()
	t := time.NewTicker(nc.period)
	defer t.Stop()
	for {
		nc.monitor(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		case <-nc.kick:
		}
	}
}

// conditionsChanged reports whether any node condition changed status.
func conditionsChanged(o, n *v1.Node) bool {
	old := map[v1.NodeConditionType]v1.ConditionStatus{}
	for _, c := range o.Status.Conditions {
		old[c.Type] = c.Status
	}
	for _, c := range n.Status.Conditions {
		if old[c.Type] != c.Status {
			return true
		}
	}
	return len(o.Status.Conditions) != len(n.Status.Conditions)
}

// podChanged queues a bound pod for an eviction check.
func (nc *Controller) podChanged(obj any) {
	p, ok := obj.(*v1.Pod)
	if !ok || p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
		return
	}
	nc.evictions.Add(controller.Key(p))
}

// nodeChanged queues every pod of a node whose NoExecute taints changed.
func (nc *Controller) nodeChanged(obj any) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	nc.forgetUntimedTaints(n, false)
	if len(noExecuteTaints(n)) == 0 {
		return
	}
	for _, p := range nc.podsOn(n.Name) {
		if p.DeletionTimestamp == nil {
			nc.evictions.Add(controller.Key(p))
		}
	}
}

// podsOn lists the pods bound to node, from the cache.
func (nc *Controller) podsOn(node string) []*v1.Pod {
	objs, err := nc.podIdx.ByIndex(podsByNode, node)
	if err != nil {
		return nil
	}
	out := make([]*v1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}
