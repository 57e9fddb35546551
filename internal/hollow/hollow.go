package hollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// Pod annotations understood by the hollow kubelet.
const (
	AnnotationRunFor     = "hollow.synod.io/run-for"
	AnnotationExitCode   = "hollow.synod.io/exit-code"
	AnnotationNeverReady = "hollow.synod.io/never-ready"
)

// NodeSpec describes one hollow node.
type NodeSpec struct {
	Name   string
	CPU    string // capacity, e.g. "4" (default)
	Memory string // e.g. "8Gi" (default)
	Pods   int    // default 110
	Labels map[string]string
	Taints []v1.Taint
}

// Options tunes the heartbeat.
type Options struct {
	// LeaseRenewInterval is how often each node renews its Lease (kubelet:
	// 10s). Default 2s.
	LeaseRenewInterval time.Duration
	// LeaseDurationSeconds is written into the Lease (kubelet: 40).
	LeaseDurationSeconds int32
	Logger               *slog.Logger
}

// Kubelet runs a set of hollow nodes.
type Kubelet struct {
	client kubernetes.Interface
	opts   Options
	log    *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	nodes map[string]*node // by name; removed by StopNode
	queue workqueue.TypedRateLimitingInterface[string]
	pods  cache.Indexer
}

type node struct {
	spec    NodeSpec
	index   int
	cancel  context.CancelFunc
	nextIP  int
	podCIDR netip.Prefix
}

// Start registers the nodes (creating or updating them) and runs them until
// ctx ends or Close is called.
func Start(ctx context.Context, client kubernetes.Interface, specs []NodeSpec, opts Options) (*Kubelet, error) {
	if opts.LeaseRenewInterval == 0 {
		opts.LeaseRenewInterval = 2 * time.Second
	}
	if opts.LeaseDurationSeconds == 0 {
		opts.LeaseDurationSeconds = 40
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	k := &Kubelet{client: client, opts: opts, log: opts.Logger, cancel: cancel, nodes: map[string]*node{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	for i, s := range specs {
		if s.Name == "" {
			cancel()
			return nil, errors.New("hollow: node without a name")
		}
		if s.CPU == "" {
			s.CPU = "4"
		}
		if s.Memory == "" {
			s.Memory = "8Gi"
		}
		if s.Pods == 0 {
			s.Pods = 110
		}
		n := &node{spec: s, index: i}
		if err := k.register(ctx, n); err != nil {
			cancel()
			return nil, err
		}
		nctx, ncancel := context.WithCancel(ctx)
		n.cancel = ncancel
		k.nodes[s.Name] = n
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			k.heartbeat(nctx, n)
		}()
	}
	// One informer for the pods of all hollow nodes (bound pods only).
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	k.pods = inf.GetIndexer()
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			k.queue.Add(key)
		}
	}
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		factory.Shutdown()
		return nil, fmt.Errorf("hollow: pod informer did not sync: %w", context.Cause(ctx))
	}
	for range 4 {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			for k.processPod(ctx) {
			}
		}()
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		<-ctx.Done()
		k.queue.ShutDown()
		factory.Shutdown()
	}()
	return k, nil
}

// StopNode stops one node's heartbeat and its pods' handling, as if its
// machine had died. It does not delete anything.
func (k *Kubelet) StopNode(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if n := k.nodes[name]; n != nil {
		n.cancel()
		delete(k.nodes, name)
	}
}

// Close stops every node and waits for the background work to end.
func (k *Kubelet) Close() {
	k.cancel()
	k.wg.Wait()
}

func (k *Kubelet) node(name string) *node {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nodes[name]
}

// register creates the Node, or takes over an existing one of that name.
func (k *Kubelet) register(ctx context.Context, n *node) error {
	cpu, err := resource.ParseQuantity(n.spec.CPU)
	if err != nil {
		return fmt.Errorf("hollow: node %s cpu %q: %w", n.spec.Name, n.spec.CPU, err)
	}
	mem, err := resource.ParseQuantity(n.spec.Memory)
	if err != nil {
		return fmt.Errorf("hollow: node %s memory %q: %w", n.spec.Name, n.spec.Memory, err)
	}
	labels := map[string]string{"kubernetes.io/hostname": n.spec.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
	for k, v := range n.spec.Labels {
		labels[k] = v
	}
	resources := v1.ResourceList{v1.ResourceCPU: cpu, v1.ResourceMemory: mem, v1.ResourcePods: *resource.NewQuantity(int64(n.spec.Pods), resource.DecimalSI)}
	want := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.spec.Name, Labels: labels},
		Spec:       v1.NodeSpec{Taints: n.spec.Taints},
	}
	got, err := k.client.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = k.client.CoreV1().Nodes().Get(ctx, n.spec.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("hollow: register node %s: %w", n.spec.Name, err)
	}
	// The controller-manager may write the node (its podCIDR) between our
	// create and status update: retry on conflict with the latest version.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if got == nil {
			if got, err = k.client.CoreV1().Nodes().Get(ctx, n.spec.Name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		now := metav1.Now()
		got.Status = v1.NodeStatus{
			Capacity:    resources,
			Allocatable: resources,
			Phase:       v1.NodeRunning,
			Addresses: []v1.NodeAddress{
				{Type: v1.NodeInternalIP, Address: nodeIP(n.index).String()},
				{Type: v1.NodeHostName, Address: n.spec.Name},
			},
			NodeInfo: v1.NodeSystemInfo{KubeletVersion: "v1.32.0-hollow", ContainerRuntimeVersion: "hollow://0", OperatingSystem: "linux",
				Architecture: "amd64", OSImage: "hollow", KernelVersion: "hollow", MachineID: n.spec.Name, SystemUUID: n.spec.Name, BootID: n.spec.Name},
			Conditions: []v1.NodeCondition{
				cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "kubelet is posting ready status", now),
				cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", now),
				cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now),
				cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available", now),
			},
		}
		_, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, got, metav1.UpdateOptions{})
		got = nil
		return err
	})
	if err != nil {
		return fmt.Errorf("hollow: node %s status: %w", n.spec.Name, err)
	}
	return k.renewLease(ctx, n)
}

func cond(t v1.NodeConditionType, s v1.ConditionStatus, reason, msg string, now metav1.Time) v1.NodeCondition {
	return v1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
}

// nodeIP is a made-up InternalIP per node (198.18.0.0/15, the benchmark range).
func nodeIP(i int) netip.Addr {
	i++ // no .0 addresses
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
}

// heartbeat renews the node's Lease and, less often, its Ready condition
// (as the kubelet does: the Lease is the cheap heartbeat).
func (k *Kubelet) heartbeat(ctx context.Context, n *node) {
	t := time.NewTicker(k.opts.LeaseRenewInterval)
	defer t.Stop()
	lastStatus := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.renewLease(ctx, n); err != nil && ctx.Err() == nil {
			k.log.Warn("hollow node lease renewal failed", "node", n.spec.Name, "err", err)
		}
		if time.Since(lastStatus) >= 4*k.opts.LeaseRenewInterval {
			if err := k.postReady(ctx, n); err != nil && ctx.Err() == nil {
				k.log.Warn("hollow node status update failed", "node", n.spec.Name, "err", err)
			} else {
				lastStatus = time.Now()
			}
		}
	}
}

func (k *Kubelet) renewLease(ctx context.Context, n *node) error {
	leases := k.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, n.spec.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: n.spec.Name, Namespace: v1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(n.spec.Name), LeaseDurationSeconds: ptr.To(k.opts.LeaseDurationSeconds), RenewTime: &now}}
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity = ptr.To(n.spec.Name)
	l.Spec.LeaseDurationSeconds = ptr.To(k.opts.LeaseDurationSeconds)
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// postReady refreshes the node conditions: all healthy, heartbeat now.
func (k *Kubelet) postReady(ctx context.Context, n *node) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error { return k.postReadyOnce(ctx, n) })
}

func (k *Kubelet) postReadyOnce(ctx context.Context, n *node) error {
	nd, err := k.client.CoreV1().Nodes().Get(ctx, n.spec.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	healthy := map[v1.NodeConditionType]v1.NodeCondition{
		v1.NodeReady:          cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "kubelet is posting ready status", now),
		v1.NodeMemoryPressure: cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", now),
		v1.NodeDiskPressure:   cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now),
		v1.NodePIDPressure:    cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available", now),
	}
	for i, c := range nd.Status.Conditions {
		h, ok := healthy[c.Type]
		if !ok {
			continue
		}
		if c.Status == h.Status {
			h.LastTransitionTime = c.LastTransitionTime
		}
		nd.Status.Conditions[i] = h
		delete(healthy, c.Type)
	}
	for _, h := range healthy {
		nd.Status.Conditions = append(nd.Status.Conditions, h)
	}
	if n.podCIDR == (netip.Prefix{}) && nd.Spec.PodCIDR != "" {
		k.mu.Lock()
		n.podCIDR, _ = netip.ParsePrefix(nd.Spec.PodCIDR)
		k.mu.Unlock()
	}
	_, err = k.client.CoreV1().Nodes().UpdateStatus(ctx, nd, metav1.UpdateOptions{})
	return err
}

func (k *Kubelet) processPod(ctx context.Context) bool {
	key, quit := k.queue.Get()
	if quit {
		return false
	}
	defer k.queue.Done(key)
	retry, err := k.syncPod(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		k.log.Debug("hollow pod sync failed", "pod", key, "err", err)
		k.queue.AddRateLimited(key)
	case retry > 0:
		k.queue.Forget(key)
		k.queue.AddAfter(key, retry)
	default:
		k.queue.Forget(key)
	}
	return true
}

// syncPod moves a pod one step along its hollow life; it returns a delay
// after which it wants to look at the pod again (a run-to-completion pod's
// end).
func (k *Kubelet) syncPod(ctx context.Context, key string) (time.Duration, error) {
	obj, ok, err := k.pods.GetByKey(key)
	if err != nil || !ok {
		return 0, err
	}
	pod := obj.(*v1.Pod)
	n := k.node(pod.Spec.NodeName)
	if n == nil {
		return 0, nil // not ours, or our node is stopped
	}
	pods := k.client.CoreV1().Pods(pod.Namespace)
	if pod.DeletionTimestamp != nil {
		// The kubelet confirms a graceful delete once the containers are
		// gone; hollow containers stop at once.
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0),
			Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return 0, nil
		}
		return 0, err
	}
	now := metav1.Now()
	switch pod.Status.Phase {
	case v1.PodSucceeded, v1.PodFailed:
		return 0, nil
	case v1.PodRunning:
		if pod.Spec.RestartPolicy == v1.RestartPolicyAlways || pod.Status.StartTime == nil {
			return 0, nil
		}
		runFor := time.Second
		if v, ok := pod.Annotations[AnnotationRunFor]; ok {
			if d, err := time.ParseDuration(v); err == nil {
				runFor = d
			}
		}
		if left := time.Until(pod.Status.StartTime.Add(runFor)); left > 0 {
			return left, nil
		}
		code := int32(0)
		if v, ok := pod.Annotations[AnnotationExitCode]; ok {
			if c, err := strconv.Atoi(v); err == nil {
				code = int32(c)
			}
		}
		st := pod.DeepCopy()
		st.Status.Phase = v1.PodSucceeded
		reason := "Completed"
		if code != 0 {
			st.Status.Phase = v1.PodFailed
			reason = "Error"
		}
		for i := range st.Status.ContainerStatuses {
			cs := &st.Status.ContainerStatuses[i]
			started := now
			if cs.State.Running != nil {
				started = cs.State.Running.StartedAt
			}
			cs.State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code, Reason: reason, StartedAt: started, FinishedAt: now, ContainerID: cs.ContainerID}}
			cs.Ready = false
			cs.Started = ptr.To(false)
		}
		setPodCondition(st, v1.PodReady, v1.ConditionFalse, "PodCompleted", now)
		setPodCondition(st, v1.ContainersReady, v1.ConditionFalse, "PodCompleted", now)
		_, err := pods.UpdateStatus(ctx, st, metav1.UpdateOptions{})
		return 0, ignoreGone(err)
	}
	// Pending: start it.
	st := pod.DeepCopy()
	ready := pod.Annotations[AnnotationNeverReady] != "true"
	readyStatus := v1.ConditionTrue
	if !ready {
		readyStatus = v1.ConditionFalse
	}
	st.Status.Phase = v1.PodRunning
	st.Status.HostIP = nodeIP(n.index).String()
	st.Status.HostIPs = []v1.HostIP{{IP: st.Status.HostIP}}
	k.learnPodCIDR(ctx, n)
	ip := k.podIP(n)
	st.Status.PodIP = ip
	st.Status.PodIPs = []v1.PodIP{{IP: ip}}
	st.Status.StartTime = &now
	st.Status.QOSClass = v1.PodQOSBestEffort
	st.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.Status.ContainerStatuses = append(st.Status.ContainerStatuses, v1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "hollow://" + c.Image, ContainerID: "hollow://" + string(pod.UID) + "/" + c.Name,
			Ready: ready, Started: ptr.To(true), State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: now}},
		})
	}
	setPodCondition(st, v1.PodInitialized, v1.ConditionTrue, "", now)
	setPodCondition(st, v1.PodScheduled, v1.ConditionTrue, "", now)
	setPodCondition(st, v1.ContainersReady, readyStatus, "", now)
	setPodCondition(st, v1.PodReady, readyStatus, "", now)
	_, err = pods.UpdateStatus(ctx, st, metav1.UpdateOptions{})
	return 0, ignoreGone(err)
}

// learnPodCIDR reads the node's podCIDR (set by the controller-manager's
// node IPAM) until it is known.
func (k *Kubelet) learnPodCIDR(ctx context.Context, n *node) {
	k.mu.Lock()
	known := n.podCIDR.IsValid()
	k.mu.Unlock()
	if known {
		return
	}
	nd, err := k.client.CoreV1().Nodes().Get(ctx, n.spec.Name, metav1.GetOptions{})
	if err != nil || nd.Spec.PodCIDR == "" {
		return
	}
	if p, err := netip.ParsePrefix(nd.Spec.PodCIDR); err == nil {
		k.mu.Lock()
		n.podCIDR = p
		k.mu.Unlock()
	}
}

// podIP hands out addresses from the node's podCIDR (once the
// controller-manager has set it) or from a made-up /24 per node.
func (k *Kubelet) podIP(n *node) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	n.nextIP++
	if n.podCIDR.IsValid() && n.podCIDR.Addr().Is4() {
		a := n.podCIDR.Addr().As4()
		host := n.nextIP%250 + 2
		return netip.AddrFrom4([4]byte{a[0], a[1], a[2], byte(host)}).String()
	}
	return netip.AddrFrom4([4]byte{100, 64 + byte(n.index>>8&63), byte(n.index), byte(n.nextIP%250 + 2)}).String()
}

func setPodCondition(p *v1.Pod, t v1.PodConditionType, s v1.ConditionStatus, reason string, now metav1.Time) {
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type == t {
			if c.Status != s {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason = s, reason
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now})
}

// ignoreGone: a pod deleted or changed under us is looked at again through
// the informer; nothing to retry.
func ignoreGone(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
