package printers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func running(ready bool, restarts int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Ready: ready, RestartCount: restarts, Started: ptr(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(time.Hour)}}}
}

func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
}

func terminated(reason string, code int32, finished time.Duration) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code, FinishedAt: ago(finished)}
}

func pod(name string, containers int, status corev1.PodStatus) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: objMeta(name), Status: status}
	for i := 0; i < containers; i++ {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + string(rune('0'+i)), Image: "nginx:1.27"})
	}
	return p
}

func scheduled(p *corev1.Pod) *corev1.Pod {
	p.Spec.NodeName = "node-1"
	p.Status.PodIP = "10.244.1.7"
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.244.1.7"}}
	return p
}

func TestPodRows(t *testing.T) {
	readyCond := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}

	// web-1: two containers, the second restarted 3 times, last 5m ago.
	restarting := running(true, 3)
	restarting.LastTerminationState.Terminated = terminated("Error", 1, 5*time.Minute)
	twoContainers := scheduled(pod("web-1", 2, corev1.PodStatus{Phase: corev1.PodRunning,
		Conditions:        []corev1.PodCondition{readyCond},
		ContainerStatuses: []corev1.ContainerStatus{running(true, 0), restarting}}))

	crash := corev1.ContainerStatus{Name: "c1", RestartCount: 5, State: waiting("CrashLoopBackOff"),
		LastTerminationState: corev1.ContainerState{Terminated: terminated("Error", 1, 2*time.Minute)}}
	crashLoop := scheduled(pod("crash", 2, corev1.PodStatus{Phase: corev1.PodRunning,
		ContainerStatuses: []corev1.ContainerStatus{running(true, 0), crash}}))

	pending := pod("pending", 1, corev1.PodStatus{Phase: corev1.PodPending})

	creating := pod("creating", 1, corev1.PodStatus{Phase: corev1.PodPending,
		ContainerStatuses: []corev1.ContainerStatus{{State: waiting("ContainerCreating")}}})
	creating.Spec.NodeName = "node-2"

	terminating := scheduled(pod("terminating", 1, corev1.PodStatus{Phase: corev1.PodRunning,
		ContainerStatuses: []corev1.ContainerStatus{running(true, 0)}}))
	terminating.DeletionTimestamp = agoPtr(10 * time.Second)

	nodeLost := scheduled(pod("lost", 1, corev1.PodStatus{Phase: corev1.PodRunning, Reason: "NodeLost",
		ContainerStatuses: []corev1.ContainerStatus{running(true, 0)}}))
	nodeLost.DeletionTimestamp = agoPtr(time.Minute)

	completed := scheduled(pod("job-abc12", 1, corev1.PodStatus{Phase: corev1.PodSucceeded,
		ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: terminated("Completed", 0, time.Hour)}}}}))
	// A terminal pod being deleted keeps showing its final status (1.31+).
	completedDeleting := completed.DeepCopy()
	completedDeleting.Name = "job-def34"
	completedDeleting.DeletionTimestamp = agoPtr(time.Second)

	failedNoReason := scheduled(pod("failed", 1, corev1.PodStatus{Phase: corev1.PodFailed,
		ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}}}}}))
	signalled := scheduled(pod("signalled", 1, corev1.PodStatus{Phase: corev1.PodFailed,
		ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Signal: 9}}}}}))
	oom := scheduled(pod("oom", 1, corev1.PodStatus{Phase: corev1.PodRunning,
		ContainerStatuses: []corev1.ContainerStatus{{RestartCount: 1, State: corev1.ContainerState{Terminated: terminated("OOMKilled", 137, 3*time.Second)},
			LastTerminationState: corev1.ContainerState{Terminated: terminated("OOMKilled", 137, 90*time.Second)}}}}))

	evicted := pod("evicted", 1, corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"})
	evicted.Spec.NodeName = "node-1"

	gated := pod("gated", 1, corev1.PodStatus{Phase: corev1.PodPending,
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated}}})

	// Init containers.
	withInit := func(name string, statuses ...corev1.ContainerStatus) *corev1.Pod {
		p := scheduled(pod(name, 1, corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: statuses,
			ContainerStatuses: []corev1.ContainerStatus{{State: waiting("PodInitializing")}}}))
		p.Spec.InitContainers = []corev1.Container{{Name: "init-a"}, {Name: "init-b"}}
		return p
	}
	initDone := corev1.ContainerStatus{Name: "init-a", State: corev1.ContainerState{Terminated: terminated("Completed", 0, time.Minute)}}
	initRunning := withInit("init-running", initDone, corev1.ContainerStatus{Name: "init-b", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
	initPull := withInit("init-pull", corev1.ContainerStatus{Name: "init-a", State: waiting("ImagePullBackOff")}, corev1.ContainerStatus{Name: "init-b", State: waiting("PodInitializing")})
	initErr := withInit("init-error", corev1.ContainerStatus{Name: "init-a", RestartCount: 2, State: corev1.ContainerState{Terminated: terminated("Error", 1, time.Minute)},
		LastTerminationState: corev1.ContainerState{Terminated: terminated("Error", 1, 4*time.Minute)}})
	initExit := withInit("init-exit", corev1.ContainerStatus{Name: "init-a", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}})
	initCrash := withInit("init-crash", corev1.ContainerStatus{Name: "init-a", RestartCount: 4, State: waiting("CrashLoopBackOff")})

	// A sidecar (restartable init container), started and ready.
	sidecar := scheduled(pod("sidecar", 1, corev1.PodStatus{Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}, readyCond},
		InitContainerStatuses: []corev1.ContainerStatus{func() corev1.ContainerStatus {
			s := running(true, 1)
			s.Name = "proxy"
			s.LastTerminationState.Terminated = terminated("Error", 1, 20*time.Minute)
			return s
		}()},
		ContainerStatuses: []corev1.ContainerStatus{running(true, 0)}}))
	sidecar.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways)}}

	// One container finished, one still running but the pod is not ready.
	notReady := scheduled(pod("not-ready", 2, corev1.PodStatus{Phase: corev1.PodRunning,
		ContainerStatuses: []corev1.ContainerStatus{running(true, 0), {State: corev1.ContainerState{Terminated: terminated("Completed", 0, time.Minute)}}}}))
	stillRunning := scheduled(pod("still-running", 2, corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{readyCond},
		ContainerStatuses: []corev1.ContainerStatus{running(true, 0), {State: corev1.ContainerState{Terminated: terminated("Completed", 0, time.Minute)}}}}))

	// Wide cells: nominated node, readiness gates, dual-stack IPs.
	gates := pod("gates", 1, corev1.PodStatus{Phase: corev1.PodPending, NominatedNodeName: "node-3",
		Conditions: []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionTrue}, {Type: "example.com/dns", Status: corev1.ConditionFalse}}})
	gates.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}, {ConditionType: "example.com/dns"}}
	dual := scheduled(pod("dual", 1, corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(true, 0)}}))
	dual.Status.PodIPs = []corev1.PodIP{{IP: "fd00:10:244::7"}, {IP: "10.244.1.7"}}
	onlyPodIP := pod("only-podip", 1, corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.9"})

	young := scheduled(pod("young", 1, corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(true, 0)}}))
	young.CreationTimestamp = ago(42 * time.Second)
	noTimestamp := pod("no-ts", 1, corev1.PodStatus{})
	noTimestamp.CreationTimestamp = metav1.Time{}

	checkRows(t, "Pod", []rowCase{
		{"two containers one restarting", twoContainers, []interface{}{"web-1", "2/2", "Running", "3 (5m ago)", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"crash loop", crashLoop, []interface{}{"crash", "1/2", "CrashLoopBackOff", "5 (2m ago)", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"pending unscheduled", pending, []interface{}{"pending", "0/1", "Pending", "0", "10d", "<none>", "<none>", "<none>", "<none>"}},
		{"container creating", creating, []interface{}{"creating", "0/1", "ContainerCreating", "0", "10d", "<none>", "node-2", "<none>", "<none>"}},
		{"terminating", terminating, []interface{}{"terminating", "1/1", "Terminating", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"node lost", nodeLost, []interface{}{"lost", "1/1", "Unknown", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"completed", completed, []interface{}{"job-abc12", "0/1", "Completed", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"completed being deleted", completedDeleting, []interface{}{"job-def34", "0/1", "Completed", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"exit code", failedNoReason, []interface{}{"failed", "0/1", "ExitCode:2", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"signal", signalled, []interface{}{"signalled", "0/1", "Signal:9", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"oom killed", oom, []interface{}{"oom", "0/1", "OOMKilled", "1 (90s ago)", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"evicted", evicted, []interface{}{"evicted", "0/1", "Evicted", "0", "10d", "<none>", "node-1", "<none>", "<none>"}},
		{"scheduling gated", gated, []interface{}{"gated", "0/1", "SchedulingGated", "0", "10d", "<none>", "<none>", "<none>", "<none>"}},
		{"init running", initRunning, []interface{}{"init-running", "0/1", "Init:1/2", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"init image pull", initPull, []interface{}{"init-pull", "0/1", "Init:ImagePullBackOff", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"init error", initErr, []interface{}{"init-error", "0/1", "Init:Error", "2 (4m ago)", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"init exit code", initExit, []interface{}{"init-exit", "0/1", "Init:ExitCode:3", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"init crash loop", initCrash, []interface{}{"init-crash", "0/1", "Init:CrashLoopBackOff", "4", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"sidecar", sidecar, []interface{}{"sidecar", "2/2", "Running", "1 (20m ago)", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"completed container not ready", notReady, []interface{}{"not-ready", "1/2", "NotReady", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"completed container still running", stillRunning, []interface{}{"still-running", "1/2", "Running", "0", "10d", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"readiness gates", gates, []interface{}{"gates", "0/1", "Pending", "0", "10d", "<none>", "<none>", "node-3", "1/2"}},
		{"dual stack", dual, []interface{}{"dual", "1/1", "Running", "0", "10d", "fd00:10:244::7", "node-1", "<none>", "<none>"}},
		{"podIP only", onlyPodIP, []interface{}{"only-podip", "0/1", "Running", "0", "10d", "10.244.2.9", "<none>", "<none>", "<none>"}},
		{"seconds old", young, []interface{}{"young", "1/1", "Running", "0", "42s", "10.244.1.7", "node-1", "<none>", "<none>"}},
		{"no timestamp", noTimestamp, []interface{}{"no-ts", "0/1", "", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"}},
	})
}
