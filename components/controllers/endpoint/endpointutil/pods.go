package endpointutil

import (
	"fmt"
	"hash"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/dump"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"synod/components/controller"
)

// ShouldPodBeInEndpoints: a pod that has not finished and has an IP; a
// terminating one only when includeTerminating (publishNotReadyAddresses
// for Endpoints; EndpointSlices always include them, marked terminating).
func ShouldPodBeInEndpoints(pod *v1.Pod, includeTerminating bool) bool {
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return false
	}
	if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
		return false
	}
	if !includeTerminating && pod.DeletionTimestamp != nil {
		return false
	}
	return true
}

// ShouldSetHostname: the pod asked for a hostname under this service
// (spec.hostname with spec.subdomain = service name, same namespace).
func ShouldSetHostname(pod *v1.Pod, svc *v1.Service) bool {
	return pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && svc.Namespace == pod.Namespace
}

// FindPort resolves a service port's targetPort against the pod: a name is
// looked up among the containers' (and sidecars') ports with the same
// protocol; a number is taken as is (0, left unset, means the service
// port itself).
func FindPort(pod *v1.Pod, svcPort *v1.ServicePort) (int, error) {
	target := svcPort.TargetPort
	switch target.Type {
	case intstr.String:
		name := target.StrVal
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == name && protocolOf(p.Protocol) == protocolOf(svcPort.Protocol) {
					return int(p.ContainerPort), nil
				}
			}
		}
		for _, c := range pod.Spec.InitContainers {
			if c.RestartPolicy == nil || *c.RestartPolicy != v1.ContainerRestartPolicyAlways {
				continue
			}
			for _, p := range c.Ports {
				if p.Name == name && protocolOf(p.Protocol) == protocolOf(svcPort.Protocol) {
					return int(p.ContainerPort), nil
				}
			}
		}
	case intstr.Int:
		if target.IntValue() == 0 {
			return int(svcPort.Port), nil
		}
		return target.IntValue(), nil
	}
	return 0, fmt.Errorf("no suitable port for manifest: %s", pod.UID)
}

func protocolOf(p v1.Protocol) v1.Protocol {
	if p == "" {
		return v1.ProtocolTCP
	}
	return p
}

// PodReady is the pod's Ready condition.
func PodReady(pod *v1.Pod) bool { return controller.IsPodReady(pod) }

// ServicesForPod returns the keys of the services in the pod's namespace
// whose selector matches the pod.
func ServicesForPod(lister corelisters.ServiceLister, pod *v1.Pod) (sets.Set[string], error) {
	out := sets.New[string]()
	if pod.Namespace == "" {
		return out, nil
	}
	svcs, err := lister.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list services of namespace %s: %w", pod.Namespace, err)
	}
	for _, svc := range svcs {
		if svc.Spec.Selector == nil {
			continue // services without a selector have hand-made endpoints
		}
		if labels.ValidatedSetSelector(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			out.Insert(controller.Key(svc))
		}
	}
	return out, nil
}

// PodChangedServices is what a pod update means for the services: the
// services to sync (those selecting the old or the new pod, or only the
// ones whose membership changed when nothing endpoint-relevant changed).
func PodChangedServices(lister corelisters.ServiceLister, oldPod, newPod *v1.Pod) sets.Set[string] {
	if newPod.ResourceVersion == oldPod.ResourceVersion {
		return nil // a periodic resync, nothing changed
	}
	labelsChanged := !labels.Equals(labels.Set(oldPod.Labels), labels.Set(newPod.Labels))
	if !labelsChanged && !podEndpointsChanged(oldPod, newPod) {
		return nil
	}
	services, err := ServicesForPod(lister, newPod)
	if err != nil {
		return nil
	}
	if labelsChanged {
		old, err := ServicesForPod(lister, oldPod)
		if err == nil {
			if podEndpointsChanged(oldPod, newPod) {
				return services.Union(old)
			}
			// Only membership changed: only the services gained or lost.
			return services.Difference(old).Union(old.Difference(services))
		}
	}
	return services
}

// podEndpointsChanged: something an endpoint is made of differs.
func podEndpointsChanged(oldPod, newPod *v1.Pod) bool {
	if PodReady(oldPod) != PodReady(newPod) {
		return true
	}
	if (oldPod.DeletionTimestamp == nil) != (newPod.DeletionTimestamp == nil) {
		return true
	}
	if oldPod.Status.Phase != newPod.Status.Phase {
		return true
	}
	if oldPod.Status.PodIP != newPod.Status.PodIP || len(oldPod.Status.PodIPs) != len(newPod.Status.PodIPs) {
		return true
	}
	if oldPod.Spec.NodeName != newPod.Spec.NodeName || oldPod.Spec.Hostname != newPod.Spec.Hostname || oldPod.Spec.Subdomain != newPod.Spec.Subdomain {
		return true
	}
	return false
}

// DeepHashObject writes obj's deep dump into hasher, as Kubernetes'
// hashutil does (the hashes order subsets and ports canonically).
func DeepHashObject(hasher hash.Hash, obj any) {
	hasher.Reset()
	fmt.Fprintf(hasher, "%v", dump.ForHash(obj))
}

// PodHandler is the pod event handler both endpoint controllers register:
// it enqueues (with add) the keys of the services whose endpoints a pod
// event may change.
func PodHandler(lister corelisters.ServiceLister, add func(key string)) cache.ResourceEventHandlerFuncs {
	onPod := func(obj any) {
		pod := podOf(obj)
		if pod == nil {
			return
		}
		keys, err := ServicesForPod(lister, pod)
		if err != nil {
			return
		}
		for key := range keys {
			add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		DeleteFunc: onPod,
		UpdateFunc: func(oldObj, newObj any) {
			oldPod, newPod := podOf(oldObj), podOf(newObj)
			if oldPod == nil || newPod == nil {
				return
			}
			for key := range PodChangedServices(lister, oldPod, newPod) {
				add(key)
			}
		},
	}
}

func podOf(obj any) *v1.Pod {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, _ := obj.(*v1.Pod)
	return pod
}
