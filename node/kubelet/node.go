package kubelet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// Node leases last 40 s, as the kubelet's (nodeLeaseDurationSeconds).
const leaseDurationSeconds = 40

// statusCheckInterval is how often the node status is recomputed and
// posted if it changed (the kubelet's nodeStatusUpdateFrequency).
const statusCheckInterval = 10 * time.Second

// Eviction-style thresholds for the pressure conditions (the kubelet's
// hard eviction defaults).
const (
	memoryAvailableMin = 100 << 20 // memory.available<100Mi
	diskAvailableMin   = 0.10      // nodefs.available<10%
	pidAvailableMin    = 0.05      // less than 5% of pid_max left
)

// registerNode creates the Node, or updates an existing one's labels,
// retrying with backoff until it succeeds or ctx ends.
func (k *Kubelet) registerNode(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for {
		err := k.tryRegisterNode(ctx)
		if err == nil {
			k.log.Info("node registered")
			return nil
		}
		k.log.Warn("register node", "err", err, "retry in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubelet: register node %s: %w (last error: %v)", k.cfg.NodeName, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 7*time.Second)
	}
}

func (k *Kubelet) nodeLabels() map[string]string {
	l := map[string]string{
		v1.LabelHostname:          k.cfg.NodeName,
		v1.LabelOSStable:          goruntime.GOOS,
		v1.LabelArchStable:        goruntime.GOARCH,
		"beta.kubernetes.io/os":   goruntime.GOOS,
		"beta.kubernetes.io/arch": goruntime.GOARCH,
	}
	for key, v := range k.cfg.Labels {
		l[key] = v
	}
	return l
}

func (k *Kubelet) tryRegisterNode(ctx context.Context) error {
	nodes := k.client.CoreV1().Nodes()
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: k.nodeLabels()},
		Spec:       v1.NodeSpec{Taints: k.cfg.Taints},
	}
	node.Status = k.nodeStatus(ctx, nil)
	_, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if err == nil {
		// Create may drop the status (it does on a real apiserver for
		// some fields); the first status post sets it either way.
		return k.postNodeStatus(ctx)
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node: %w", err)
	}
	// The node exists (a kubelet restart): make its labels ours. Taints
	// are registration-only, as the kubelet's --register-with-taints.
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := cur.DeepCopy()
		if want.Labels == nil {
			want.Labels = map[string]string{}
		}
		for key, v := range k.nodeLabels() {
			want.Labels[key] = v
		}
		if apiequality.Semantic.DeepEqual(want.Labels, cur.Labels) {
			return nil
		}
		_, err = nodes.Update(ctx, want, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("update existing node: %w", err)
	}
	return k.postNodeStatus(ctx)
}

// nodeStatusLoop posts the node status when it changed (checked every
// statusCheckInterval or on a kick) and at least every NodeStatusInterval.
func (k *Kubelet) nodeStatusLoop(ctx context.Context) {
	check := time.NewTicker(statusCheckInterval)
	defer check.Stop()
	last := time.Now()
	var lastConds []v1.NodeCondition
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
		case <-k.nodeKick:
		}
		conds := k.conditions()
		if time.Since(last) < k.cfg.NodeStatusInterval && sameConditionStatus(conds, lastConds) {
			continue
		}
		if err := k.postNodeStatus(ctx); err != nil {
			k.log.Warn("post node status", "err", err)
			continue
		}
		last, lastConds = time.Now(), conds
	}
}

func sameConditionStatus(a, b []v1.NodeCondition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Status != b[i].Status || a[i].Reason != b[i].Reason {
			return false
		}
	}
	return true
}

// postNodeStatus writes the status onto the latest Node, keeping the
// conditions others own (the controller-manager patches the node too).
func (k *Kubelet) postNodeStatus(ctx context.Context) error {
	nodes := k.client.CoreV1().Nodes()
	var readyChanged *v1.NodeCondition
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node := cur.DeepCopy()
		node.Status = k.nodeStatus(ctx, cur)
		if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			return err
		}
		readyChanged = nil
		old, now := findNodeCondition(cur.Status.Conditions, v1.NodeReady), findNodeCondition(node.Status.Conditions, v1.NodeReady)
		if now != nil && (old == nil || old.Status != now.Status) {
			readyChanged = now
		}
		return nil
	})
	k.metrics.nodeStatus.WithLabelValues(resultLabel(err)).Inc()
	if err != nil {
		return fmt.Errorf("kubelet: update node status: %w", err)
	}
	if readyChanged != nil {
		if readyChanged.Status == v1.ConditionTrue {
			k.recorder.Eventf(k.nodeRef(), v1.EventTypeNormal, "NodeReady", "Node %s status is now: NodeReady", k.cfg.NodeName)
		} else {
			k.recorder.Eventf(k.nodeRef(), v1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", k.cfg.NodeName)
		}
	}
	return nil
}

func findNodeCondition(conds []v1.NodeCondition, t v1.NodeConditionType) *v1.NodeCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// nodeStatus is the status the kubelet reports, built on cur's (nil for
// a new node): capacity, addresses, nodeInfo, and the kubelet's four
// conditions with transition times kept while their status holds.
func (k *Kubelet) nodeStatus(ctx context.Context, cur *v1.Node) v1.NodeStatus {
	var st v1.NodeStatus
	if cur != nil {
		st = *cur.Status.DeepCopy()
	}
	capacity := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(memTotal(), resource.BinarySI),
		v1.ResourcePods:   *resource.NewQuantity(int64(k.cfg.MaxPods), resource.DecimalSI),
	}
	if total, _, err := diskSpace(k.cfg.StateDir); err == nil {
		capacity[v1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(total), resource.BinarySI)
	}
	st.Capacity = capacity
	st.Allocatable = capacity.DeepCopy()
	st.Addresses = nil
	if k.cfg.NodeIP != "" {
		st.Addresses = append(st.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: k.cfg.NodeIP})
	}
	st.Addresses = append(st.Addresses, v1.NodeAddress{Type: v1.NodeHostName, Address: k.cfg.NodeName})
	st.NodeInfo = k.nodeInfo(ctx)
	st.DaemonEndpoints = v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(k.cfg.KubeletPort)}}

	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	var kept []v1.NodeCondition
	for _, c := range st.Conditions {
		switch c.Type {
		case v1.NodeReady, v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure:
		default:
			kept = append(kept, c) // someone else's (e.g. NetworkUnavailable)
		}
	}
	for _, c := range k.conditions() {
		c.LastHeartbeatTime = now
		c.LastTransitionTime = now
		if old := findNodeCondition(st.Conditions, c.Type); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		kept = append(kept, c)
	}
	st.Conditions = kept
	return st
}

// conditions are the kubelet's node conditions with its reasons and
// messages (without times).
func (k *Kubelet) conditions() []v1.NodeCondition {
	cond := func(t v1.NodeConditionType, bad bool, badReason, badMsg, okReason, okMsg string) v1.NodeCondition {
		if bad {
			return v1.NodeCondition{Type: t, Status: v1.ConditionTrue, Reason: badReason, Message: badMsg}
		}
		return v1.NodeCondition{Type: t, Status: v1.ConditionFalse, Reason: okReason, Message: okMsg}
	}
	memLow := memAvailable() < memoryAvailableMin
	diskLow := false
	if total, avail, err := diskSpace(k.cfg.StateDir); err == nil && total > 0 {
		diskLow = float64(avail)/float64(total) < diskAvailableMin
	}
	pidLow := pidsLow()
	ready := v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubelet is posting ready status"}
	if k.cfg.Network != nil && k.net() == nil {
		ready = v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionFalse, Reason: "KubeletNotReady",
			Message: "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: node has no podCIDR yet"}
	}
	return []v1.NodeCondition{
		cond(v1.NodeMemoryPressure, memLow, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available",
			"KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		cond(v1.NodeDiskPressure, diskLow, "KubeletHasDiskPressure", "kubelet has disk pressure",
			"KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		cond(v1.NodePIDPressure, pidLow, "KubeletHasInsufficientPID", "kubelet has insufficient PID available",
			"KubeletHasSufficientPID", "kubelet has sufficient PID available"),
		ready,
	}
}

func (k *Kubelet) nodeInfo(ctx context.Context) v1.NodeSystemInfo {
	info := v1.NodeSystemInfo{
		MachineID:               readTrim("/etc/machine-id"),
		BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
		KernelVersion:           kernelRelease(),
		OSImage:                 osImage(),
		ContainerRuntimeVersion: "containerd://unknown",
		KubeletVersion:          Version,
		OperatingSystem:         goruntime.GOOS,
		Architecture:            goruntime.GOARCH,
	}
	info.SystemUUID = readTrim("/sys/class/dmi/id/product_uuid")
	if v, ok := k.rt.(runtimeVersioner); ok {
		if s, err := v.Version(ctx); err == nil && s != "" {
			info.ContainerRuntimeVersion = "containerd://" + strings.TrimPrefix(s, "v")
		}
	}
	return info
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return string(bytes.TrimRight(u.Release[:], "\x00"))
}

func osImage() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// meminfo returns a /proc/meminfo field in bytes (0 if unknown).
func meminfo(field string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

func memTotal() int64 { return meminfo("MemTotal") }

func memAvailable() int64 {
	if v := meminfo("MemAvailable"); v > 0 {
		return v
	}
	return memoryAvailableMin // unknown: no pressure
}

// diskSpace is the total and available bytes of the filesystem at path.
func diskSpace(path string) (total, avail uint64, err error) {
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		return 0, 0, err
	}
	return s.Blocks * uint64(s.Bsize), s.Bavail * uint64(s.Bsize), nil
}

// pidsLow reports whether the number of processes is close to pid_max.
func pidsLow() bool {
	max, err := strconv.Atoi(readTrim("/proc/sys/kernel/pid_max"))
	if err != nil || max <= 0 {
		return false
	}
	// /proc/loadavg's fourth field is running/total scheduling entities.
	fields := strings.Fields(readTrim("/proc/loadavg"))
	if len(fields) < 4 {
		return false
	}
	_, total, ok := strings.Cut(fields[3], "/")
	if !ok {
		return false
	}
	n, err := strconv.Atoi(total)
	if err != nil {
		return false
	}
	return float64(max-n)/float64(max) < pidAvailableMin
}

// leaseLoop renews the node Lease every LeaseInterval, retrying failures
// with the kubelet's backoff (200 ms doubling to 7 s).
func (k *Kubelet) leaseLoop(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		wait := k.cfg.LeaseInterval
		// Bounded like the kubelet's heartbeat client: a request stuck on a
		// master that died or restarted under it must not stop the
		// heartbeat (the next attempt goes through another connection).
		rctx, cancel := context.WithTimeout(ctx, max(k.cfg.LeaseInterval, 2*time.Second))
		start := time.Now()
		err := k.renewLease(rctx)
		cancel()
		if took := time.Since(start); took > time.Second && err == nil {
			// A slow heartbeat eats into the node's grace period: worth
			// seeing in the log when a node flaps.
			k.log.Warn("slow node lease renewal", "took", took.Round(time.Millisecond))
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k.log.Warn("renew node lease", "err", err, "retry in", backoff)
			wait = backoff
			backoff = min(2*backoff, 7*time.Second)
		} else {
			backoff = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (k *Kubelet) renewLease(ctx context.Context) error {
	leases := k.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	holder := k.cfg.NodeName
	dur := int32(leaseDurationSeconds)
	lease, err := leases.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Namespace: v1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur,
				RenewTime: &now},
		}
		k.setLeaseOwner(ctx, lease)
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		k.metrics.leases.WithLabelValues(resultLabel(err)).Inc()
		if err != nil {
			return fmt.Errorf("create lease: %w", err)
		}
		return nil
	}
	if err != nil {
		k.metrics.leases.WithLabelValues("error").Inc()
		return fmt.Errorf("get lease: %w", err)
	}
	lease.Spec.HolderIdentity = &holder
	lease.Spec.LeaseDurationSeconds = &dur
	lease.Spec.RenewTime = &now
	if len(lease.OwnerReferences) == 0 {
		k.setLeaseOwner(ctx, lease)
	}
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	k.metrics.leases.WithLabelValues(resultLabel(err)).Inc()
	if err != nil {
		return fmt.Errorf("update lease: %w", err)
	}
	return nil
}

// setLeaseOwner makes the Node own its Lease (garbage-collected with it),
// as the kubelet does.
func (k *Kubelet) setLeaseOwner(ctx context.Context, lease *coordinationv1.Lease) {
	node, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if err != nil || node.UID == "" {
		return
	}
	lease.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
}

func resultLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
