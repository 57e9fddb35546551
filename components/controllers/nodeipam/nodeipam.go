package nodeipam

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
)

// component is the event source, as Kubernetes names its range allocator.
const component = "cidrAllocator"

// Controller allocates node podCIDRs.
type Controller struct {
	client   kubernetes.Interface
	log      *slog.Logger
	recorder record.EventRecorder
	nodes    corelisters.NodeLister
	queue    workqueue.TypedRateLimitingInterface[string]
	cidrs    *cidrSet
	workers  int

	// waitingMu guards waiting: nodes that found the range full, queued
	// again when a CIDR is released.
	waitingMu sync.Mutex
	waiting   map[string]bool
}

// New builds the controller and registers its node informer.
func New(c *controller.Context) (controller.Runner, error) {
	cidrs, err := newCIDRSet(c.Options.ClusterCIDR, c.Options.NodeCIDRMaskSize)
	if err != nil {
		return nil, err
	}
	inf := c.Informers.Core().V1().Nodes()
	ctl := &Controller{
		client:   c.Client,
		log:      c.Logger.With("controller", "nodeipam"),
		recorder: c.Recorder(component),
		nodes:    inf.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodeipam"}),
		cidrs:   cidrs,
		workers: max(1, c.Options.ConcurrentSyncs),
		waiting: map[string]bool{},
	}
	_, err = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    ctl.nodeChanged,
		UpdateFunc: func(_, obj any) { ctl.nodeChanged(obj) },
		DeleteFunc: ctl.nodeDeleted,
	})
	if err != nil {
		return nil, fmt.Errorf("nodeipam: node handler: %w", err)
	}
	return ctl, nil
}

// Run allocates until ctx ends. The manager calls it once the node cache
// has synced, so every CIDR already held is known before the first
// allocation; the explicit pass below makes that independent of handler
// timing.
func (ctl *Controller) Run(ctx context.Context) {
	nodes, err := ctl.nodes.List(labels.Everything())
	if err != nil {
		ctl.log.Error("list nodes", "err", err)
	}
	for _, n := range nodes {
		ctl.occupy(n)
	}
	ctl.log.Info("node IPAM running", "clusterCIDR", ctl.cidrs.base, "nodeMask", ctl.cidrs.mask, "held", ctl.cidrs.used())
	go func() {
		<-ctx.Done()
		ctl.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for range ctl.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctl.process(ctx) {
			}
		}()
	}
	wg.Wait()
}

func (ctl *Controller) nodeChanged(obj any) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	if len(n.Spec.PodCIDRs) > 0 || n.Spec.PodCIDR != "" {
		ctl.occupy(n)
		return
	}
	ctl.queue.Add(n.Name)
}

func (ctl *Controller) nodeDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	n, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	if p, ok := ctl.cidrs.release(n.Name); ok {
		ctl.log.Info("released node CIDR", "node", n.Name, "cidr", p)
		ctl.waitingMu.Lock()
		for name := range ctl.waiting {
			ctl.queue.Add(name)
		}
		clear(ctl.waiting)
		ctl.waitingMu.Unlock()
	}
}

// occupy records the CIDRs a node already carries.
func (ctl *Controller) occupy(n *v1.Node) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			ctl.log.Warn("node has an unparsable podCIDR", "node", n.Name, "cidr", c)
			continue
		}
		if err := ctl.cidrs.occupy(n.Name, p); err != nil {
			ctl.log.Error("node podCIDR conflict", "err", err)
		}
	}
}

func (ctl *Controller) process(ctx context.Context) bool {
	name, quit := ctl.queue.Get()
	if quit {
		return false
	}
	defer ctl.queue.Done(name)
	if err := ctl.sync(ctx, name); err != nil {
		if ctx.Err() == nil {
			ctl.log.Warn("allocate node CIDR", "node", name, "err", err)
		}
		ctl.queue.AddRateLimited(name)
		return true
	}
	ctl.queue.Forget(name)
	return true
}

// sync gives the node a CIDR if it has none.
func (ctl *Controller) sync(ctx context.Context, name string) error {
	node, err := ctl.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(node.Spec.PodCIDRs) > 0 || node.Spec.PodCIDR != "" {
		ctl.occupy(node)
		return nil
	}
	p, err := ctl.cidrs.allocate(name)
	if err == errFull {
		ctl.log.Warn("no CIDR left for node", "node", name, "clusterCIDR", ctl.cidrs.base)
		ctl.recorder.Eventf(&v1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID},
			v1.EventTypeNormal, "CIDRNotAvailable", "Node %s status is now: %s", node.Name, "CIDRNotAvailable")
		ctl.waitingMu.Lock()
		ctl.waiting[name] = true
		ctl.waitingMu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	return ctl.patch(ctx, node, p)
}

// patch writes p into the node's spec. The allocation stays ours until the
// node is deleted: if the write failed but in fact landed, releasing it
// could hand it out twice.
func (ctl *Controller) patch(ctx context.Context, node *v1.Node, p netip.Prefix) error {
	body, err := json.Marshal(map[string]any{
		"spec": map[string]any{"podCIDR": p.String(), "podCIDRs": []string{p.String()}},
	})
	if err != nil {
		return err
	}
	_, err = ctl.client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, body, metav1.PatchOptions{})
	switch {
	case err == nil:
		ctl.log.Info("allocated node CIDR", "node", node.Name, "cidr", p)
		return nil
	case apierrors.IsNotFound(err):
		ctl.cidrs.release(node.Name)
		return nil
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsConflict(err):
		// Someone set a CIDR first (or the node was replaced): go by
		// what the node carries now.
		fresh, gerr := ctl.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if gerr == nil && (fresh.UID != node.UID || len(fresh.Spec.PodCIDRs) > 0) {
			ctl.cidrs.release(node.Name)
			if len(fresh.Spec.PodCIDRs) > 0 {
				ctl.occupy(fresh)
				return nil
			}
			return fmt.Errorf("nodeipam: node %s was replaced; retrying", node.Name)
		}
	}
	return fmt.Errorf("nodeipam: set podCIDR %s on node %s: %w", p, node.Name, err)
}
