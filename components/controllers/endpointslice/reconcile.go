package endpointslice

import (
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"

	"synod/components/controller"
	"synod/components/controllers/endpoint/endpointutil"
)

// endpointSet is the desired endpoints of one port mapping, keyed by
// identity (addresses, hostname, target pod), as Kubernetes' EndpointSet.
// Endpoints are popped in key order so slices fill in a stable order.
type endpointSet struct {
	m     map[string]*discovery.Endpoint
	order []string // sorted keys, built at the first pop
	pos   int
}

func newEndpointSet() *endpointSet { return &endpointSet{m: map[string]*discovery.Endpoint{}} }

func (s *endpointSet) len() int { return len(s.m) }

func (s *endpointSet) pop() *discovery.Endpoint {
	if s.order == nil {
		s.order = make([]string, 0, len(s.m))
		for k := range s.m {
			s.order = append(s.order, k)
		}
		sort.Strings(s.order)
	}
	for s.pos < len(s.order) {
		k := s.order[s.pos]
		s.pos++
		if ep, ok := s.m[k]; ok {
			delete(s.m, k)
			return ep
		}
	}
	return nil
}

func endpointKey(ep *discovery.Endpoint) string {
	addrs := append([]string(nil), ep.Addresses...)
	sort.Strings(addrs)
	var b strings.Builder
	b.WriteString(strings.Join(addrs, ","))
	b.WriteString("|")
	if ep.Hostname != nil {
		b.WriteString(*ep.Hostname)
	}
	b.WriteString("|")
	if ep.TargetRef != nil {
		b.WriteString(ep.TargetRef.Namespace + "/" + ep.TargetRef.Name)
	}
	return b.String()
}

// portsKey identifies a port mapping: slices hold endpoints with the same
// ports only.
func portsKey(ports []discovery.EndpointPort) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		var name, proto, app string
		var port int32
		if p.Name != nil {
			name = *p.Name
		}
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		if p.AppProtocol != nil {
			app = *p.AppProtocol
		}
		if p.Port != nil {
			port = *p.Port
		}
		parts = append(parts, fmt.Sprintf("%s/%s/%d/%s", name, proto, port, app))
	}
	sort.Strings(parts)
	return strings.Join(parts, ";")
}

// desiredState is what a service's slices should hold, per port mapping.
type desiredState struct {
	ports     map[string][]discovery.EndpointPort
	endpoints map[string]*endpointSet
}

// desired computes the endpoints of svc over its selected pods: every pod
// with an IPv4 address that has not finished, terminating ones included
// (marked so).
func desired(svc *v1.Service, pods []*v1.Pod, nodes corelisters.NodeLister) desiredState {
	d := desiredState{ports: map[string][]discovery.EndpointPort{}, endpoints: map[string]*endpointSet{}}
	for _, pod := range pods {
		if !endpointutil.ShouldPodBeInEndpoints(pod, true) {
			continue
		}
		ip := ipv4Of(pod)
		if ip == "" {
			continue
		}
		ports := endpointPorts(svc, pod)
		key := portsKey(ports)
		if _, ok := d.ports[key]; !ok {
			d.ports[key] = ports
			d.endpoints[key] = newEndpointSet()
		}
		ep := podToEndpoint(pod, ip, svc, nodes)
		d.endpoints[key].m[endpointKey(ep)] = ep
	}
	return d
}

func ipv4Of(pod *v1.Pod) string {
	for _, pip := range pod.Status.PodIPs {
		if a, err := netip.ParseAddr(pip.IP); err == nil && a.Is4() {
			return pip.IP
		}
	}
	if a, err := netip.ParseAddr(pod.Status.PodIP); err == nil && a.Is4() {
		return pod.Status.PodIP
	}
	return ""
}

func endpointPorts(svc *v1.Service, pod *v1.Pod) []discovery.EndpointPort {
	out := []discovery.EndpointPort{}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		num, err := endpointutil.FindPort(pod, sp)
		if err != nil {
			continue
		}
		name, proto, port := sp.Name, sp.Protocol, int32(num)
		out = append(out, discovery.EndpointPort{Name: &name, Port: &port, Protocol: &proto, AppProtocol: sp.AppProtocol})
	}
	return out
}

func podToEndpoint(pod *v1.Pod, ip string, svc *v1.Service, nodes corelisters.NodeLister) *discovery.Endpoint {
	serving := controller.IsPodReady(pod)
	terminating := pod.DeletionTimestamp != nil
	// For compatibility "ready" is never true for a terminating pod,
	// unless the service publishes not-ready addresses.
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := &discovery.Endpoint{
		Addresses:  []string{ip},
		Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		TargetRef:  &v1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.NodeName != "" {
		nodeName := pod.Spec.NodeName
		ep.NodeName = &nodeName
		// The zone is read at sync time; a pod on a node not (yet) known
		// is published without one.
		if node, err := nodes.Get(nodeName); err == nil {
			if zone := node.Labels[v1.LabelTopologyZone]; zone != "" {
				ep.Zone = &zone
			}
		}
	}
	if endpointutil.ShouldSetHostname(pod, svc) {
		hostname := pod.Spec.Hostname
		ep.Hostname = &hostname
	}
	return ep
}

// plan is the writes one sync makes.
type plan struct {
	create, update, remove []*discovery.EndpointSlice
}

// reconcile turns existing slices into the desired state with as few
// writes as Kubernetes' reconciler makes: endpoints that stay stay in
// their slice, changed slices are filled up first, leftovers go into the
// unchanged slice that fits them best, and only then into new slices.
func reconcile(svc *v1.Service, existing []*discovery.EndpointSlice, want desiredState, maxPerSlice int, trigger time.Time) plan {
	var p plan
	byPorts := map[string][]*discovery.EndpointSlice{}
	for _, s := range existing {
		if s.AddressType != discovery.AddressTypeIPv4 || !ownedBy(s, svc) {
			// Not ours to keep: another address type, or a slice of an
			// earlier service of the same name.
			p.remove = append(p.remove, s)
			continue
		}
		k := portsKey(s.Ports)
		byPorts[k] = append(byPorts[k], s)
	}
	keys := make([]string, 0, len(want.ports))
	for k := range want.ports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c, u, r := reconcilePorts(svc, byPorts[k], want.ports[k], want.endpoints[k], maxPerSlice)
		p.create = append(p.create, c...)
		p.update = append(p.update, u...)
		p.remove = append(p.remove, r...)
	}
	for k, slices := range byPorts {
		if _, ok := want.ports[k]; !ok {
			p.remove = append(p.remove, slices...)
		}
	}
	// A service without endpoints has one empty placeholder slice.
	if len(existing) == len(p.remove) && len(p.create) == 0 {
		if len(p.remove) == 1 && isPlaceholder(p.remove[0]) && ownedBy(p.remove[0], svc) && p.remove[0].AddressType == discovery.AddressTypeIPv4 {
			p.remove = nil
		} else {
			p.create = append(p.create, newSlice(svc, []discovery.EndpointPort{}))
		}
	}
	// Rather than create one slice and delete another, reuse the latter.
	for i := 0; i < len(p.remove) && len(p.create) > 0; {
		old := p.remove[i]
		if !ownedBy(old, svc) || old.AddressType != discovery.AddressTypeIPv4 {
			i++
			continue
		}
		s := p.create[len(p.create)-1]
		p.create = p.create[:len(p.create)-1]
		s.Name = old.Name
		s.ResourceVersion = old.ResourceVersion
		p.update = append(p.update, s)
		p.remove = append(p.remove[:i], p.remove[i+1:]...)
	}
	for _, s := range append(p.create, p.update...) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		if !trigger.IsZero() {
			s.Annotations[v1.EndpointsLastChangeTriggerTime] = trigger.UTC().Format(time.RFC3339Nano)
		} else {
			delete(s.Annotations, v1.EndpointsLastChangeTriggerTime)
		}
	}
	return p
}

func reconcilePorts(svc *v1.Service, existing []*discovery.EndpointSlice, ports []discovery.EndpointPort, want *endpointSet, maxPerSlice int) (create, update, remove []*discovery.EndpointSlice) {
	byName := map[string]*discovery.EndpointSlice{}
	var toUpdate, unchanged []string
	// 1. Drop endpoints no longer wanted, refresh changed ones.
	for _, s := range existing {
		kept := make([]discovery.Endpoint, 0, len(s.Endpoints))
		changed := false
		for i := range s.Endpoints {
			k := endpointKey(&s.Endpoints[i])
			got, ok := want.m[k]
			if !ok {
				continue
			}
			kept = append(kept, *got)
			if !apiequality.Semantic.DeepEqual(*got, s.Endpoints[i]) {
				changed = true
			}
			delete(want.m, k)
		}
		lbls, labelsChanged := sliceLabels(s, svc)
		switch {
		case changed || len(kept) != len(s.Endpoints):
			if len(kept) == 0 {
				remove = append(remove, s)
				continue
			}
			c := s.DeepCopy()
			c.Endpoints, c.Labels = kept, lbls
			byName[c.Name] = c
			toUpdate = append(toUpdate, c.Name)
		case labelsChanged:
			c := s.DeepCopy()
			c.Labels = lbls
			byName[c.Name] = c
			toUpdate = append(toUpdate, c.Name)
		default:
			byName[s.Name] = s
			unchanged = append(unchanged, s.Name)
		}
	}
	// 2. Fill the slices being written anyway, fullest first.
	if want.len() > 0 && len(toUpdate) > 0 {
		sort.SliceStable(toUpdate, func(i, j int) bool { return len(byName[toUpdate[i]].Endpoints) > len(byName[toUpdate[j]].Endpoints) })
		for _, name := range toUpdate {
			s := byName[name]
			for want.len() > 0 && len(s.Endpoints) < maxPerSlice {
				s.Endpoints = append(s.Endpoints, *want.pop())
			}
		}
	}
	// 3. Put what is left into the unchanged slice it fits best, or new ones.
	for want.len() > 0 {
		var fill *discovery.EndpointSlice
		if want.len() < maxPerSlice && len(unchanged) > 0 {
			best, bestDiff := -1, maxPerSlice
			for i, name := range unchanged {
				diff := maxPerSlice - (want.len() + len(byName[name].Endpoints))
				if diff >= 0 && diff < bestDiff {
					best, bestDiff = i, diff
				}
			}
			if best >= 0 {
				fill = byName[unchanged[best]].DeepCopy()
				byName[fill.Name] = fill
				unchanged = append(unchanged[:best], unchanged[best+1:]...)
				toUpdate = append(toUpdate, fill.Name)
			}
		}
		if fill == nil {
			fill = newSlice(svc, ports)
			create = append(create, fill)
		}
		for want.len() > 0 && len(fill.Endpoints) < maxPerSlice {
			fill.Endpoints = append(fill.Endpoints, *want.pop())
		}
	}
	for _, name := range toUpdate {
		update = append(update, byName[name])
	}
	return create, update, remove
}

// sliceLabels is the labels a slice of svc carries: the service's own
// (without the reserved ones), the headless marker, the service name and
// the managed-by label. changed reports whether s has others.
func sliceLabels(s *discovery.EndpointSlice, svc *v1.Service) (map[string]string, bool) {
	reserved := func(k string) bool {
		return k == discovery.LabelServiceName || k == discovery.LabelManagedBy || k == v1.IsHeadlessService
	}
	out := map[string]string{}
	for k, v := range svc.Labels {
		if !reserved(k) {
			out[k] = v
		}
	}
	if svc.Spec.ClusterIP == v1.ClusterIPNone {
		out[v1.IsHeadlessService] = ""
	}
	out[discovery.LabelServiceName] = svc.Name
	out[discovery.LabelManagedBy] = ControllerName
	return out, !maps.Equal(out, s.Labels)
}

func newSlice(svc *v1.Service, ports []discovery.EndpointPort) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    controller.GeneratePrefix(svc.Name),
			Namespace:       svc.Namespace,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(svc, v1.SchemeGroupVersion.WithKind("Service"))},
		},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   []discovery.Endpoint{},
	}
	s.Labels, _ = sliceLabels(s, svc)
	return s
}

func isPlaceholder(s *discovery.EndpointSlice) bool {
	return len(s.Endpoints) == 0 && len(s.Ports) == 0
}

func ownedBy(s *discovery.EndpointSlice, svc *v1.Service) bool {
	for _, o := range s.OwnerReferences {
		if o.UID == svc.UID && o.Kind == "Service" && o.APIVersion == "v1" {
			return true
		}
	}
	return false
}
