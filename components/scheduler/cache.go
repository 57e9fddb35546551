package scheduler

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	resourcehelper "k8s.io/component-helpers/resource"
)

// What kube-scheduler assumes a container without requests uses, for
// scoring only (schedutil.DefaultMilliCPURequest/DefaultMemoryRequest):
// without it, best-effort pods would all pile onto one node.
const (
	defaultMilliCPURequest = 100
	defaultMemoryRequest   = 200 * 1024 * 1024
)

var nonZeroDefaults = v1.ResourceList{
	v1.ResourceCPU:    *resource.NewMilliQuantity(defaultMilliCPURequest, resource.DecimalSI),
	v1.ResourceMemory: *resource.NewQuantity(defaultMemoryRequest, resource.DecimalSI),
}

// resources is the part of a ResourceList the scheduler accounts for.
type resources struct {
	milliCPU, memory, ephemeral int64
}

func toResources(rl v1.ResourceList) resources {
	var r resources
	if q, ok := rl[v1.ResourceCPU]; ok {
		r.milliCPU = q.MilliValue()
	}
	if q, ok := rl[v1.ResourceMemory]; ok {
		r.memory = q.Value()
	}
	if q, ok := rl[v1.ResourceEphemeralStorage]; ok {
		r.ephemeral = q.Value()
	}
	return r
}

func (r *resources) add(o resources) {
	r.milliCPU += o.milliCPU
	r.memory += o.memory
	r.ephemeral += o.ephemeral
}

func (r *resources) sub(o resources) {
	r.milliCPU -= o.milliCPU
	r.memory -= o.memory
	r.ephemeral -= o.ephemeral
}

// hostPort is one hostPort a pod asks for; ip "0.0.0.0" means every address.
type hostPort struct {
	protocol v1.Protocol
	port     int32
	ip       string
}

// protoPort keys a node's used ports; the value maps host IP to use count.
type protoPort struct {
	protocol v1.Protocol
	port     int32
}

// podInfo is what the scheduler derives from a pod once, so that neither a
// scheduling cycle nor the cache recomputes it per node.
type podInfo struct {
	pod     *v1.Pod
	req     resources // requests: max(sum of containers, any init container) + overhead
	nonZero resources // the same with the defaults above for missing requests
	ports   []hostPort
	owner   types.UID // the controller's UID, for spreading; "" without one
}

func newPodInfo(pod *v1.Pod) *podInfo {
	pi := &podInfo{pod: pod, req: toResources(resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}))}
	pi.nonZero = pi.req
	if missingRequests(pod) {
		pi.nonZero = toResources(resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{NonMissingContainerRequests: nonZeroDefaults}))
	}
	// Sidecars (restartable init containers) keep their ports for the
	// pod's whole life, like regular containers.
	addPorts := func(cs []v1.Container, sidecarsOnly bool) {
		for i := range cs {
			c := &cs[i]
			if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != v1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, p := range c.Ports {
				if p.HostPort <= 0 {
					continue
				}
				hp := hostPort{protocol: p.Protocol, port: p.HostPort, ip: p.HostIP}
				if hp.protocol == "" {
					hp.protocol = v1.ProtocolTCP
				}
				if hp.ip == "" || hp.ip == "::" {
					hp.ip = "0.0.0.0"
				}
				pi.ports = append(pi.ports, hp)
			}
		}
	}
	addPorts(pod.Spec.InitContainers, true)
	addPorts(pod.Spec.Containers, false)
	for _, ref := range pod.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			pi.owner = ref.UID
			break
		}
	}
	return pi
}

// missingRequests: some container leaves cpu or memory unrequested, so the
// scoring requests differ from the real ones.
func missingRequests(pod *v1.Pod) bool {
	if pod.Spec.Resources != nil && len(pod.Spec.Resources.Requests) > 0 {
		return true // pod-level resources: let the helper decide
	}
	for _, cs := range [2][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			r := cs[i].Resources.Requests
			if _, ok := r[v1.ResourceCPU]; !ok {
				return true
			}
			if _, ok := r[v1.ResourceMemory]; !ok {
				return true
			}
		}
	}
	return false
}

// nodeInfo is one node with everything assigned to it aggregated, so that
// a filter or score reads a few numbers instead of walking the node's pods.
type nodeInfo struct {
	name string
	node *v1.Node // nil while only pods name this node

	allocatable resources
	allowedPods int
	// taints are the node's own plus the taint the node lifecycle
	// controller puts on a node that is not Ready (TaintNodesByCondition),
	// so a NotReady node is filtered, and reported, as Kubernetes does.
	taints []v1.Taint

	requested        resources
	nonZeroRequested resources
	pods             map[types.UID]*podInfo
	usedPorts        map[protoPort]map[string]int
	owners           map[types.UID]int // pods per controller

	index int // position in schedCache.list, -1 when not listed
}

func newNodeInfo(name string) *nodeInfo {
	return &nodeInfo{name: name, pods: map[types.UID]*podInfo{}, owners: map[types.UID]int{}, index: -1}
}

func (ni *nodeInfo) setNode(node *v1.Node) {
	ni.node = node
	alloc := node.Status.Allocatable
	ni.allocatable = toResources(alloc)
	ni.allowedPods = 0
	if q, ok := alloc[v1.ResourcePods]; ok {
		ni.allowedPods = int(q.Value())
	}
	ni.taints = node.Spec.Taints
	if key := notReadyTaintKey(node); key != "" && !hasTaint(node.Spec.Taints, key, v1.TaintEffectNoSchedule) {
		ni.taints = append(append(make([]v1.Taint, 0, len(node.Spec.Taints)+1), node.Spec.Taints...),
			v1.Taint{Key: key, Effect: v1.TaintEffectNoSchedule})
	}
}

// Taint keys of the node lifecycle controller (k8s.io/api/core/v1 names them).
const (
	taintNotReady      = v1.TaintNodeNotReady
	taintUnreachable   = v1.TaintNodeUnreachable
	taintUnschedulable = v1.TaintNodeUnschedulable
)

// notReadyTaintKey is the condition taint a node that is not Ready carries in
// Kubernetes: not-ready for Ready=False (or no Ready condition yet, as a
// freshly registered kubelet's node), unreachable for Ready=Unknown.
func notReadyTaintKey(node *v1.Node) string {
	for i := range node.Status.Conditions {
		c := &node.Status.Conditions[i]
		if c.Type != v1.NodeReady {
			continue
		}
		switch c.Status {
		case v1.ConditionTrue:
			return ""
		case v1.ConditionUnknown:
			return taintUnreachable
		default:
			return taintNotReady
		}
	}
	return taintNotReady
}

func hasTaint(taints []v1.Taint, key string, effect v1.TaintEffect) bool {
	for i := range taints {
		if taints[i].Key == key && taints[i].Effect == effect {
			return true
		}
	}
	return false
}

func (ni *nodeInfo) addPod(pi *podInfo) {
	ni.pods[pi.pod.UID] = pi
	ni.requested.add(pi.req)
	ni.nonZeroRequested.add(pi.nonZero)
	for _, p := range pi.ports {
		if ni.usedPorts == nil {
			ni.usedPorts = map[protoPort]map[string]int{}
		}
		k := protoPort{p.protocol, p.port}
		if ni.usedPorts[k] == nil {
			ni.usedPorts[k] = map[string]int{}
		}
		ni.usedPorts[k][p.ip]++
	}
	if pi.owner != "" {
		ni.owners[pi.owner]++
	}
}

func (ni *nodeInfo) removePod(pi *podInfo) {
	if _, ok := ni.pods[pi.pod.UID]; !ok {
		return
	}
	delete(ni.pods, pi.pod.UID)
	ni.requested.sub(pi.req)
	ni.nonZeroRequested.sub(pi.nonZero)
	for _, p := range pi.ports {
		k := protoPort{p.protocol, p.port}
		if m := ni.usedPorts[k]; m != nil {
			if m[p.ip]--; m[p.ip] <= 0 {
				delete(m, p.ip)
			}
			if len(m) == 0 {
				delete(ni.usedPorts, k)
			}
		}
	}
	if pi.owner != "" {
		if ni.owners[pi.owner]--; ni.owners[pi.owner] <= 0 {
			delete(ni.owners, pi.owner)
		}
	}
}

// portConflict reports whether a wanted host port is taken: same protocol
// and port, and overlapping addresses (either side 0.0.0.0, or the same IP).
func (ni *nodeInfo) portConflict(want hostPort) bool {
	m := ni.usedPorts[protoPort{want.protocol, want.port}]
	if len(m) == 0 {
		return false
	}
	if want.ip == "0.0.0.0" {
		return true
	}
	return m[want.ip] > 0 || m["0.0.0.0"] > 0
}

// podState is a pod the cache accounts to a node.
type podState struct {
	info *podInfo
	node string
	// assumed: this scheduler chose the node and the binding is not yet
	// seen through the informer; it counts all the same, so the next
	// cycles see the node as it will be.
	assumed bool
}

// schedCache is the scheduler's view of the nodes and what is assigned to
// them. Informer handlers update it; a scheduling cycle holds mu for its
// whole filter-score-assume step so that it decides on one consistent state.
type schedCache struct {
	mu    sync.Mutex
	nodes map[string]*nodeInfo
	list  []*nodeInfo // nodes with a Node object, in the order cycles walk them
	pods  map[types.UID]*podState
}

func newSchedCache() *schedCache {
	return &schedCache{nodes: map[string]*nodeInfo{}, pods: map[types.UID]*podState{}}
}

func (c *schedCache) nodeLocked(name string) *nodeInfo {
	ni := c.nodes[name]
	if ni == nil {
		ni = newNodeInfo(name)
		c.nodes[name] = ni
	}
	return ni
}

// dropIfEmptyLocked forgets a node entry that has neither a Node nor pods.
func (c *schedCache) dropIfEmptyLocked(ni *nodeInfo) {
	if ni.node == nil && len(ni.pods) == 0 {
		delete(c.nodes, ni.name)
	}
}

func (c *schedCache) setNode(node *v1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodeLocked(node.Name)
	ni.setNode(node)
	if ni.index < 0 {
		ni.index = len(c.list)
		c.list = append(c.list, ni)
	}
}

func (c *schedCache) removeNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodes[name]
	if ni == nil {
		return
	}
	if i := ni.index; i >= 0 {
		last := len(c.list) - 1
		c.list[i] = c.list[last]
		c.list[i].index = i
		c.list[last] = nil
		c.list = c.list[:last]
		ni.index = -1
	}
	// Pods still bound to a deleted node keep their entry until they go,
	// as kube-scheduler's cache does; the node is just no longer offered.
	ni.node = nil
	c.dropIfEmptyLocked(ni)
}

// setPod records an assigned pod as the informer reports it. It returns the
// node on which the change released resources (the pod finished or moved),
// which may let a pending pod fit there, or "".
func (c *schedCache) setPod(pod *v1.Pod) (released string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if isTerminal(pod) {
		return c.removePodLocked(pod.UID)
	}
	st := c.pods[pod.UID]
	if st != nil && st.assumed && st.node == pod.Spec.NodeName {
		// The binding this scheduler made, now seen: what it asks for
		// cannot have changed since (a bound pod's resources and ports
		// are immutable), so the accounting stays as assumed.
		st.assumed = false
		st.info.pod = pod
		return ""
	}
	if st != nil {
		ni := c.nodes[st.node]
		if ni != nil {
			ni.removePod(st.info)
			if st.node != pod.Spec.NodeName {
				released = st.node
				c.dropIfEmptyLocked(ni)
			}
		}
	}
	pi := newPodInfo(pod)
	c.pods[pod.UID] = &podState{info: pi, node: pod.Spec.NodeName}
	c.nodeLocked(pod.Spec.NodeName).addPod(pi)
	return released
}

// removePod forgets a pod (deleted, or finished); it returns the node where
// the pod held resources, or "".
func (c *schedCache) removePod(uid types.UID) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removePodLocked(uid)
}

func (c *schedCache) removePodLocked(uid types.UID) string {
	st := c.pods[uid]
	if st == nil {
		return ""
	}
	delete(c.pods, uid)
	if ni := c.nodes[st.node]; ni != nil {
		ni.removePod(st.info)
		c.dropIfEmptyLocked(ni)
	}
	return st.node
}

// assumeLocked accounts pi to node before the binding is seen.
func (c *schedCache) assumeLocked(pi *podInfo, node string) {
	c.pods[pi.pod.UID] = &podState{info: pi, node: node, assumed: true}
	c.nodeLocked(node).addPod(pi)
}

// forget drops an assumption whose binding failed, and returns the node it
// held resources on ("" if none). A pod the informer has meanwhile reported
// assigned (by anyone) is left as reported.
func (c *schedCache) forget(uid types.UID) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.pods[uid]; st == nil || !st.assumed {
		return ""
	}
	return c.removePodLocked(uid)
}

// isAssumed reports whether uid is bound (or being bound) by this scheduler
// and not yet confirmed by the informer.
func (c *schedCache) isAssumed(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.pods[uid]
	return st != nil && st.assumed
}

func isTerminal(pod *v1.Pod) bool {
	return pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
}
