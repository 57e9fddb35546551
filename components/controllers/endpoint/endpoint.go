package endpoint

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
	"synod/components/controllers/endpoint/endpointutil"
)

const (
	// ControllerName is the component events are reported as.
	ControllerName = "endpoint-controller"
	// ManagedByLabel marks the Endpoints this controller writes (as
	// Kubernetes does since 1.33), so leftovers of deleted services can be
	// told from hand-made Endpoints.
	ManagedByLabel = "endpoints.kubernetes.io/managed-by"
	// maxCapacity is how many addresses one Endpoints object holds; beyond
	// it the object is truncated and annotated, as in Kubernetes.
	maxCapacity = 1000
	// overCapacityAnnotation marks a truncated Endpoints object.
	overCapacityAnnotation = "endpoints.kubernetes.io/over-capacity"
)

// Controller keeps an Endpoints object per selector-bearing Service.
type Controller struct {
	client    kubernetes.Interface
	recorder  record.EventRecorder
	log       *slog.Logger
	workers   int
	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	endpoints corelisters.EndpointsLister
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
	trigger   *endpointutil.TriggerTimeTracker

	// leftoverOnce runs the startup sweep for Endpoints of services that
	// were deleted while no controller ran.
	leftoverOnce sync.Once
}

// New builds the controller from the shared informers.
func New(c *controller.Context) (controller.Runner, error) {
	svcInformer := c.Informers.Core().V1().Services()
	podInformer := c.Informers.Core().V1().Pods()
	epInformer := c.Informers.Core().V1().Endpoints()
	e := &Controller{
		client:    c.Client,
		recorder:  c.Recorder(ControllerName),
		log:       c.Logger.With("controller", "endpoint"),
		workers:   max(1, c.Options.ConcurrentSyncs),
		services:  svcInformer.Lister(),
		pods:      podInformer.Lister(),
		endpoints: epInformer.Lister(),
		synced:    []cache.InformerSynced{svcInformer.Informer().HasSynced, podInformer.Informer().HasSynced, epInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpoint"}),
		trigger: endpointutil.NewTriggerTimeTracker(),
	}
	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    e.enqueue,
		UpdateFunc: func(_, obj any) { e.enqueue(obj) },
		DeleteFunc: func(obj any) {
			e.enqueue(obj)
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				e.trigger.Delete(key)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("endpoint: service handler: %w", err)
	}
	if _, err := podInformer.Informer().AddEventHandler(endpointutil.PodHandler(e.services, e.queue.Add)); err != nil {
		return nil, fmt.Errorf("endpoint: pod handler: %w", err)
	}
	// A deleted Endpoints object is written again if its service still
	// wants one.
	if _, err := epInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: e.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("endpoint: endpoints handler: %w", err)
	}
	return e, nil
}

func (e *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	e.queue.Add(key)
}

// Run syncs services until ctx ends.
func (e *Controller) Run(ctx context.Context) {
	if cache.WaitForCacheSync(ctx.Done(), e.synced...) {
		e.leftoverOnce.Do(e.checkLeftoverEndpoints)
	}
	controller.RunWorkers(ctx, e.log, "endpoint", e.queue, e.workers, e.synced, e.sync)
}

// checkLeftoverEndpoints queues the Endpoints this controller wrote for
// services that no longer exist (deleted while no controller ran).
func (e *Controller) checkLeftoverEndpoints() {
	list, err := e.endpoints.List(labels.Everything())
	if err != nil {
		return
	}
	for _, ep := range list {
		if ep.Labels[ManagedByLabel] != ControllerName {
			continue
		}
		if _, err := e.services.Services(ep.Namespace).Get(ep.Name); apierrors.IsNotFound(err) {
			e.queue.Add(controller.Key(ep))
		}
	}
}

func (e *Controller) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := e.services.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		// The service is gone: so are its endpoints.
		err := e.client.CoreV1().Endpoints(namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete endpoints %s: %w", key, err)
		}
		e.trigger.Delete(key)
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Type == v1.ServiceTypeExternalName || svc.Spec.Selector == nil {
		// No selector: the user manages the Endpoints.
		return nil
	}
	pods, err := e.pods.Pods(namespace).List(labels.ValidatedSetSelector(svc.Spec.Selector))
	if err != nil {
		return err
	}
	trigger := e.trigger.Compute(svc, pods)

	subsets := e.subsetsFor(svc, pods)
	current, err := e.endpoints.Endpoints(namespace).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		current = &v1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	case err != nil:
		return err
	}
	creating := current.ResourceVersion == ""
	wantLabels := endpointsLabels(svc)
	overCapacity := subsetsLen(subsets) > maxCapacity
	if !creating && apiequality.Semantic.DeepEqual(current.Subsets, truncate(subsets)) &&
		labelsEqual(current.Labels, wantLabels) &&
		(current.Annotations[overCapacityAnnotation] == "truncated") == overCapacity {
		return nil
	}
	ep := current.DeepCopy()
	ep.Subsets = truncate(subsets)
	ep.Labels = wantLabels
	if ep.Annotations == nil {
		ep.Annotations = map[string]string{}
	}
	if !trigger.IsZero() {
		ep.Annotations[v1.EndpointsLastChangeTriggerTime] = trigger.UTC().Format(time.RFC3339Nano)
	} else {
		delete(ep.Annotations, v1.EndpointsLastChangeTriggerTime)
	}
	if overCapacity {
		ep.Annotations[overCapacityAnnotation] = "truncated"
	} else {
		delete(ep.Annotations, overCapacityAnnotation)
	}
	if creating {
		_, err = e.client.CoreV1().Endpoints(namespace).Create(ctx, ep, metav1.CreateOptions{})
	} else {
		_, err = e.client.CoreV1().Endpoints(namespace).Update(ctx, ep, metav1.UpdateOptions{})
	}
	if err != nil {
		if creating && apierrors.IsAlreadyExists(err) {
			// The cache is behind; the next sync updates it.
			return err
		}
		if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
			return nil // the namespace is going away with everything in it
		}
		verb := "update"
		reason := "FailedToUpdateEndpoint"
		if creating {
			verb, reason = "create", "FailedToCreateEndpoint"
		}
		e.recorder.Eventf(svc, v1.EventTypeWarning, reason, "Failed to %s endpoint %s: %v", verb, key, err)
		return fmt.Errorf("%s endpoints %s: %w", verb, key, err)
	}
	return nil
}

// subsetsFor builds the repacked subsets of svc over its selected pods.
func (e *Controller) subsetsFor(svc *v1.Service, pods []*v1.Pod) []v1.EndpointSubset {
	var subsets []v1.EndpointSubset
	tolerateUnready := svc.Spec.PublishNotReadyAddresses
	for _, pod := range pods {
		if !endpointutil.ShouldPodBeInEndpoints(pod, tolerateUnready) {
			continue
		}
		addr := addressFor(svc, pod)
		if len(svc.Spec.Ports) == 0 {
			// A headless service may have no ports.
			if svc.Spec.ClusterIP == v1.ClusterIPNone {
				subsets = append(subsets, subsetFor(pod, addr, nil, tolerateUnready))
			}
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, err := endpointutil.FindPort(pod, sp)
			if err != nil {
				continue
			}
			epp := &v1.EndpointPort{Name: sp.Name, Port: int32(port), Protocol: sp.Protocol, AppProtocol: sp.AppProtocol}
			subsets = append(subsets, subsetFor(pod, addr, epp, tolerateUnready))
		}
	}
	return RepackSubsets(subsets)
}

func addressFor(svc *v1.Service, pod *v1.Pod) v1.EndpointAddress {
	ip := pod.Status.PodIP
	if ip == "" && len(pod.Status.PodIPs) > 0 {
		ip = pod.Status.PodIPs[0].IP
	}
	addr := v1.EndpointAddress{
		IP:        ip,
		TargetRef: &v1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.NodeName != "" {
		node := pod.Spec.NodeName
		addr.NodeName = &node
	}
	if endpointutil.ShouldSetHostname(pod, svc) {
		addr.Hostname = pod.Spec.Hostname
	}
	return addr
}

func subsetFor(pod *v1.Pod, addr v1.EndpointAddress, port *v1.EndpointPort, tolerateUnready bool) v1.EndpointSubset {
	ports := []v1.EndpointPort{}
	if port != nil {
		ports = append(ports, *port)
	}
	if tolerateUnready || endpointutil.PodReady(pod) {
		return v1.EndpointSubset{Addresses: []v1.EndpointAddress{addr}, Ports: ports}
	}
	return v1.EndpointSubset{NotReadyAddresses: []v1.EndpointAddress{addr}, Ports: ports}
}

// endpointsLabels: the service's labels, the headless marker, and ours.
func endpointsLabels(svc *v1.Service) map[string]string {
	out := maps.Clone(svc.Labels)
	if out == nil {
		out = map[string]string{}
	}
	if svc.Spec.ClusterIP == v1.ClusterIPNone {
		out[v1.IsHeadlessService] = ""
	} else {
		delete(out, v1.IsHeadlessService)
	}
	out[ManagedByLabel] = ControllerName
	return out
}

func labelsEqual(a, b map[string]string) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}

func subsetsLen(subsets []v1.EndpointSubset) int {
	n := 0
	for _, s := range subsets {
		n += len(s.Addresses) + len(s.NotReadyAddresses)
	}
	return n
}

// truncate keeps at most maxCapacity addresses, ready ones first, spread
// over the subsets in proportion to their size (as Kubernetes does).
func truncate(subsets []v1.EndpointSubset) []v1.EndpointSubset {
	total := subsetsLen(subsets)
	if total <= maxCapacity {
		return subsets
	}
	out := make([]v1.EndpointSubset, len(subsets))
	left := maxCapacity
	for i, s := range subsets {
		share := (len(s.Addresses) + len(s.NotReadyAddresses)) * maxCapacity / total
		if i == len(subsets)-1 {
			share = left
		}
		share = min(share, left)
		left -= share
		out[i] = *s.DeepCopy()
		if len(out[i].Addresses) >= share {
			out[i].Addresses = out[i].Addresses[:share]
			out[i].NotReadyAddresses = nil
		} else {
			out[i].NotReadyAddresses = out[i].NotReadyAddresses[:min(len(out[i].NotReadyAddresses), share-len(out[i].Addresses))]
		}
	}
	return out
}
