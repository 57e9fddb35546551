package kubelet

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"synod/node/runtime"
)

// mt is a metav1.Time as the API stores it (whole seconds, UTC), so a
// status read back compares equal to the one computed.
func mt(t time.Time) metav1.Time { return metav1.NewTime(t.UTC().Truncate(time.Second)) }

// buildStatus computes the pod's status from the worker's state.
func (w *podWorker) buildStatus() v1.PodStatus {
	pod := w.pod
	old := pod.Status
	st := v1.PodStatus{
		QOSClass:          old.QOSClass,
		NominatedNodeName: old.NominatedNodeName,
		StartTime:         old.StartTime,
	}
	if st.QOSClass == "" {
		st.QOSClass = qosClass(pod)
	}
	if st.StartTime == nil {
		t := mt(time.Now())
		st.StartTime = &t
	}
	if w.k.cfg.NodeIP != "" {
		st.HostIP = w.k.cfg.NodeIP
		st.HostIPs = []v1.HostIP{{IP: w.k.cfg.NodeIP}}
	}
	if w.podIP != "" {
		st.PodIP = w.podIP
		st.PodIPs = []v1.PodIP{{IP: w.podIP}}
	} else if old.PodIP != "" {
		st.PodIP, st.PodIPs = old.PodIP, old.PodIPs
	}
	var notInit, notReady []string
	for _, c := range pod.Spec.InitContainers {
		cs := w.containerStatus(c, true)
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			notInit = append(notInit, c.Name)
		}
	}
	for _, c := range pod.Spec.Containers {
		cs := w.containerStatus(c, false)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if !cs.Ready {
			notReady = append(notReady, c.Name)
		}
	}
	st.Phase = w.phase(st.ContainerStatuses)

	var conds []v1.PodCondition
	add := func(t v1.PodConditionType, ok bool, reason, msg string) {
		c := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c = v1.PodCondition{Type: t, Status: v1.ConditionTrue}
		}
		conds = append(conds, c)
	}
	add(v1.PodReadyToStartContainers, w.sandboxReady, "", "")
	if len(notInit) == 0 || w.initDone {
		add(v1.PodInitialized, true, "", "")
	} else {
		add(v1.PodInitialized, false, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " ")))
	}
	switch {
	case st.Phase == v1.PodSucceeded:
		add(v1.ContainersReady, false, "PodCompleted", "")
		add(v1.PodReady, false, "PodCompleted", "")
	case len(notReady) > 0:
		msg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(notReady, " "))
		add(v1.ContainersReady, false, "ContainersNotReady", msg)
		add(v1.PodReady, false, "ContainersNotReady", msg)
	default:
		add(v1.ContainersReady, true, "", "")
		add(v1.PodReady, true, "", "")
	}
	owned := map[v1.PodConditionType]bool{}
	for _, c := range conds {
		owned[c.Type] = true
	}
	// Keep the conditions others own (PodScheduled, DisruptionTarget, ...)
	// and the transition times of ours whose status holds.
	var out []v1.PodCondition
	scheduled := false
	for _, c := range old.Conditions {
		if c.Type == v1.PodScheduled {
			scheduled = true
		}
		if !owned[c.Type] {
			out = append(out, c)
		}
	}
	if !scheduled {
		out = append(out, v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: mt(time.Now())})
	}
	for _, c := range conds {
		c.LastTransitionTime = mt(time.Now())
		for _, o := range old.Conditions {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
				c.LastProbeTime = o.LastProbeTime
			}
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return condOrder(out[i].Type) < condOrder(out[j].Type) })
	st.Conditions = out
	return st
}

func condOrder(t v1.PodConditionType) int {
	for i, x := range []v1.PodConditionType{v1.PodReadyToStartContainers, v1.PodInitialized, v1.PodReady, v1.ContainersReady, v1.PodScheduled} {
		if t == x {
			return i
		}
	}
	return 100
}

// containerStatus is c's status: the current attempt's state, the
// previous attempt (or the exited current one, while it waits to be
// restarted) as lastState.
func (w *podWorker) containerStatus(c v1.Container, init bool) v1.ContainerStatus {
	r := w.rec(c.Name, init)
	cs := v1.ContainerStatus{Name: c.Name, Image: c.Image}
	f := false
	cs.Started = &f
	if r.prev != nil {
		cs.LastTerminationState.Terminated = terminated(r.prev)
	}
	a := r.cur
	if a == nil {
		reason, msg := r.waitReason, r.waitMessage
		if reason == "" {
			reason = "ContainerCreating"
			if !init && !w.initDone && len(w.pod.Spec.InitContainers) > 0 {
				reason = "PodInitializing"
			}
		}
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: reason, Message: msg}
		if r.prev != nil {
			cs.RestartCount = int32(r.prev.restartCount + 1)
		}
		return cs
	}
	cs.RestartCount = int32(a.restartCount)
	cs.ContainerID = "containerd://" + a.id
	if a.state.Image != "" {
		cs.Image = a.state.Image
	}
	cs.ImageID = a.state.ImageID
	if _, exited := a.exited(); exited {
		if r.waitReason != "" {
			// Exited and about to be restarted (crash-loop backoff).
			cs.State.Waiting = &v1.ContainerStateWaiting{Reason: r.waitReason, Message: r.waitMessage}
			cs.LastTerminationState.Terminated = terminated(a)
		} else {
			cs.State.Terminated = terminated(a)
		}
		return cs
	}
	switch a.state.Phase {
	case runtime.Running:
		cs.State.Running = &v1.ContainerStateRunning{StartedAt: mt(a.state.StartedAt)}
		started, ready := true, true
		if r.probes != nil {
			started, ready = r.probes.status()
		} else if c.StartupProbe != nil || c.ReadinessProbe != nil {
			started = c.StartupProbe == nil
			ready = false
		}
		cs.Started = &started
		cs.Ready = started && ready && !init
	default:
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	return cs
}

// terminated is an attempt's end as a ContainerStateTerminated.
func terminated(a *attempt) *v1.ContainerStateTerminated {
	code, _ := a.exited()
	t := &v1.ContainerStateTerminated{
		ExitCode:    int32(code),
		ContainerID: "containerd://" + a.id,
		StartedAt:   mt(a.state.StartedAt),
		FinishedAt:  mt(a.finishedAt()),
	}
	switch {
	case a.startErr != "":
		t.Reason, t.Message = "StartError", a.startErr
		t.StartedAt = metav1.Time{}
	case a.state.OOMKilled:
		t.Reason = "OOMKilled"
	case code == 0:
		t.Reason = "Completed"
	default:
		t.Reason = "Error"
	}
	if a.state.StartedAt.IsZero() {
		t.StartedAt = metav1.Time{}
	}
	return t
}

// phase is the kubelet's getPhase: Pending until every container has
// been started, Succeeded or Failed once all have exited for good, and
// Running in between. A terminal phase never changes.
func (w *podWorker) phase(statuses []v1.ContainerStatus) v1.PodPhase {
	pod := w.pod
	if isTerminal(pod) {
		return pod.Status.Phase
	}
	if w.initFailed {
		return v1.PodFailed
	}
	if !w.initDone {
		return v1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range statuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.LastTerminationState.Terminated != nil:
			stopped++
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return v1.PodPending
	case running > 0:
		return v1.PodRunning
	case stopped > 0 && stopped == len(statuses):
		switch {
		case pod.Spec.RestartPolicy == v1.RestartPolicyAlways:
			return v1.PodRunning
		case succeeded == stopped:
			return v1.PodSucceeded
		case pod.Spec.RestartPolicy == v1.RestartPolicyOnFailure:
			return v1.PodRunning
		}
		return v1.PodFailed
	}
	return v1.PodPending
}

// qosClass is the pod's QoS class (when the API did not set it).
func qosClass(pod *v1.Pod) v1.PodQOSClass {
	any, guaranteed := false, true
	for _, c := range allContainers(pod) {
		for _, r := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
			lim, hasLim := c.Resources.Limits[r]
			req, hasReq := c.Resources.Requests[r]
			if hasLim || hasReq {
				any = true
			}
			if !hasLim || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return v1.PodQOSBestEffort
	case guaranteed:
		return v1.PodQOSGuaranteed
	}
	return v1.PodQOSBurstable
}

// writeStatus writes st through pods/status unless the API (or our last
// write, while the informer catches up) already has it. On a conflict it
// recomputes on the latest pod.
func (w *podWorker) writeStatus(ctx context.Context, st v1.PodStatus) error {
	if apiequality.Semantic.DeepEqual(st, w.pod.Status) {
		w.lastWritten = nil
		return nil
	}
	if w.lastWritten != nil && apiequality.Semantic.DeepEqual(st, *w.lastWritten) {
		return nil
	}
	pods := w.k.client.CoreV1().Pods(w.namespace)
	pod := w.pod.DeepCopy()
	pod.Status = st
	for attempt := 0; ; attempt++ {
		updated, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		if err == nil {
			w.pod = updated
			w.lastWritten = &st
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 5 {
			if apierrors.IsNotFound(err) {
				return nil // deleted meanwhile; the next sync terminates
			}
			return fmt.Errorf("update pod status: %w", err)
		}
		fresh, err := pods.Get(ctx, w.name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("update pod status: %w", err)
		}
		if fresh.UID != w.uid || fresh.DeletionTimestamp != nil {
			return nil
		}
		w.pod = fresh
		st = w.buildStatus()
		pod = fresh.DeepCopy()
		pod.Status = st
	}
}
