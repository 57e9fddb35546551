package kubelet

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func typesUID(s string) types.UID { return types.UID(s) }

// TestKubelet runs one simulated worker (node netns + real node/network,
// private containerd + runc, the kubelet) against a real synod cluster
// and walks a pod's lifecycle through it; the subtests share the node.
func TestKubelet(t *testing.T) {
	need(t)
	top := t
	c := startCluster(t)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, m := range c.Launch.Masters() {
			b, _ := os.ReadFile(m.LogFile)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("master %s log tail:\n%s", m.Name, b)
		}
	})
	n := newNode(t, c)
	n.startKubelet()
	ctx := context.Background()

	t.Run("Registration", func(t *testing.T) {
		var node *v1.Node
		eventually(t, 10*time.Second, "node registered with status", func() error {
			var err error
			node, err = c.Client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cond := findNodeCondition(node.Status.Conditions, v1.NodeReady); cond == nil {
				return fmt.Errorf("no Ready condition yet")
			}
			return nil
		})
		if node.Labels[v1.LabelHostname] != n.name || node.Labels["synod.io/test"] != "yes" || node.Labels[v1.LabelOSStable] != "linux" {
			t.Errorf("labels = %v", node.Labels)
		}
		if len(node.Spec.Taints) != 1 || node.Spec.Taints[0].Key != "synod.io/test" {
			t.Errorf("taints = %v", node.Spec.Taints)
		}
		if node.Status.Capacity.Cpu().Value() < 1 || node.Status.Capacity.Memory().Value() < 1<<20 || node.Status.Capacity.Pods().Value() != 110 {
			t.Errorf("capacity = %v", node.Status.Capacity)
		}
		info := node.Status.NodeInfo
		if info.KubeletVersion != Version || info.KernelVersion == "" || info.Architecture == "" || !strings.HasPrefix(info.ContainerRuntimeVersion, "containerd://") || info.ContainerRuntimeVersion == "containerd://unknown" {
			t.Errorf("nodeInfo = %+v", info)
		}
		if len(node.Status.Addresses) != 2 || node.Status.Addresses[0].Address != "192.0.2.10" {
			t.Errorf("addresses = %v", node.Status.Addresses)
		}
		for _, ct := range []v1.NodeConditionType{v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure} {
			if cond := findNodeCondition(node.Status.Conditions, ct); cond == nil || cond.Status != v1.ConditionFalse || !strings.HasPrefix(cond.Reason, "KubeletHas") {
				t.Errorf("%s = %+v", ct, cond)
			}
		}
		if cond := findNodeCondition(node.Status.Conditions, v1.NodeReady); cond.Status != v1.ConditionFalse || cond.Reason != "KubeletNotReady" {
			t.Errorf("Ready before podCIDR = %+v; want False KubeletNotReady", cond)
		}

		// The lease is renewed every LeaseInterval (500 ms here).
		var first time.Time
		eventually(t, 10*time.Second, "lease created", func() error {
			l, err := c.Client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if *l.Spec.HolderIdentity != n.name || len(l.OwnerReferences) != 1 || l.OwnerReferences[0].UID != node.UID {
				return fmt.Errorf("lease %+v", l)
			}
			first = l.Spec.RenewTime.Time
			return nil
		})
		eventually(t, 5*time.Second, "lease renewed", func() error {
			l, err := c.Client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !l.Spec.RenewTime.Time.After(first) {
				return fmt.Errorf("renewTime still %v", first)
			}
			return nil
		})

		// The controller-manager's IPAM gives the node a podCIDR: the
		// network comes up and the node turns Ready.
		n.setPodCIDR()
		eventually(t, 10*time.Second, "node Ready", func() error {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cond := findNodeCondition(node.Status.Conditions, v1.NodeReady); cond.Status != v1.ConditionTrue || cond.Reason != "KubeletReady" {
				return fmt.Errorf("Ready = %+v", cond)
			}
			return nil
		})
	})
	if t.Failed() {
		return
	}

	t.Run("HostGWRoutes", func(t *testing.T) {
		// The node's LAN: its InternalIP on a link in the node namespace.
		for _, args := range [][]string{
			{"link", "add", "lan0", "type", "veth", "peer", "name", "lan1"},
			{"addr", "add", "192.0.2.10/24", "dev", "lan0"},
			{"link", "set", "lan1", "up"},
			{"link", "set", "lan0", "up"},
		} {
			if out, err := exec.Command("ip", append([]string{"-n", n.nsName}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
		peer := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "peer-" + n.name}, Spec: v1.NodeSpec{PodCIDR: "10.250.7.0/24"}}
		peer, err := c.Client.CoreV1().Nodes().Create(ctx, peer, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Client.CoreV1().Nodes().Delete(ctx, peer.Name, metav1.DeleteOptions{}) })
		peer.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.0.2.11"}}
		if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, peer, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		routes := func() string {
			out, _ := exec.Command("ip", "-n", n.nsName, "route", "show", "proto", "83").CombinedOutput()
			return string(out)
		}
		eventually(t, 10*time.Second, "route to the peer's podCIDR", func() error {
			if r := routes(); !strings.Contains(r, "10.250.7.0/24 via 192.0.2.11") {
				return fmt.Errorf("routes %q", r)
			}
			return nil
		})
		if err := c.Client.CoreV1().Nodes().Delete(ctx, peer.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "route removed with the peer", func() error {
			if r := routes(); strings.Contains(r, "10.250.7.0/24") {
				return fmt.Errorf("routes %q", r)
			}
			return nil
		})
	})

	var running *v1.Pod // adopted after the kubelet restart
	t.Run("Pods", func(t *testing.T) {
		t.Run("RunningWithLog", func(t *testing.T) {
			t.Parallel()
			pod := n.createPodFor(t, top, "hi", func(p *v1.Pod) {
				p.Spec.Containers[0].Command = []string{"sh", "-c", "echo hi; sleep 3600"}
			})
			pod = n.waitPod(t, pod, 20*time.Second, "Running with podIP and Ready", func(p *v1.Pod) error {
				if p.Status.Phase != v1.PodRunning || p.Status.PodIP == "" || !podReady(p) {
					return fmt.Errorf("phase %s podIP %q ready %v", p.Status.Phase, p.Status.PodIP, podReady(p))
				}
				return nil
			})
			_, cidr, _ := net.ParseCIDR(n.podCIDR)
			if !cidr.Contains(net.ParseIP(pod.Status.PodIP)) || pod.Status.HostIP != "192.0.2.10" || pod.Status.StartTime == nil {
				t.Errorf("podIP %s hostIP %s startTime %v", pod.Status.PodIP, pod.Status.HostIP, pod.Status.StartTime)
			}
			cs := pod.Status.ContainerStatuses[0]
			if !strings.HasPrefix(cs.ContainerID, "containerd://") || cs.ImageID == "" || cs.State.Running == nil || cs.Started == nil || !*cs.Started {
				t.Errorf("container status %+v", cs)
			}
			for _, ct := range []v1.PodConditionType{v1.PodReadyToStartContainers, v1.PodInitialized, v1.ContainersReady, v1.PodReady, v1.PodScheduled} {
				if !podCondition(pod, ct) {
					t.Errorf("condition %s not True: %+v", ct, pod.Status.Conditions)
				}
			}
			logPath := n.kubelet.LogPath(pod, "main", 0)
			eventually(t, 5*time.Second, "log has hi", func() error {
				b, err := os.ReadFile(logPath)
				if err != nil {
					return err
				}
				if !bytes.Contains(b, []byte(" stdout F hi\n")) {
					return fmt.Errorf("log %q", b)
				}
				return nil
			})
			// The pod network is real: the pod answers ICMP-free TCP from
			// the node namespace only if something listens, so check the
			// address is configured by dialing a closed port (refused, not
			// unreachable).
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := n.nsDialer(dctx, "tcp", net.JoinHostPort(pod.Status.PodIP, "9"))
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("dial pod IP: %v; want connection refused", err)
			}
			running = pod
		})

		t.Run("CrashLoopBackoff", func(t *testing.T) {
			t.Parallel()
			pod := n.createPod(t, "crash", func(p *v1.Pod) {
				p.Spec.Containers[0].Command = []string{"sh", "-c", "echo crash; exit 1"}
			})
			// Record when each restart count is first seen.
			seen := map[int32]time.Time{}
			sawBackoff := false
			n.waitPod(t, pod, 30*time.Second, "restartCount 5", func(p *v1.Pod) error {
				if len(p.Status.ContainerStatuses) == 0 {
					return fmt.Errorf("no status")
				}
				cs := p.Status.ContainerStatuses[0]
				if _, ok := seen[cs.RestartCount]; !ok {
					seen[cs.RestartCount] = time.Now()
				}
				if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
					sawBackoff = true
					if lt := cs.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 1 || lt.Reason != "Error" {
						return fmt.Errorf("lastState %+v", cs.LastTerminationState)
					}
				}
				if p.Status.Phase != v1.PodRunning && cs.RestartCount > 0 {
					return fmt.Errorf("phase %s", p.Status.Phase)
				}
				if cs.RestartCount < 5 {
					return fmt.Errorf("restartCount %d", cs.RestartCount)
				}
				return nil
			})
			if !sawBackoff {
				t.Errorf("never saw CrashLoopBackOff")
			}
			// Backoff 300ms, 600ms, 1.2s, 2.4s between exits: the gap
			// before restart 5 is well above the one before restart 2.
			if seen[2].IsZero() || seen[5].IsZero() {
				t.Fatalf("missed restarts: %v", seen)
			}
			early, late := seen[2].Sub(seen[1]), seen[5].Sub(seen[4])
			if late < 2*time.Second || late < early+time.Second {
				t.Errorf("backoff not growing: gap before restart 2 %v, before restart 5 %v", early, late)
			}
			n.expectEvent(t, pod, "BackOff", "Back-off restarting failed container main")
		})

		t.Run("NeverSucceeded", func(t *testing.T) {
			t.Parallel()
			pod := n.createPod(t, "once", func(p *v1.Pod) {
				p.Spec.RestartPolicy = v1.RestartPolicyNever
				p.Spec.Containers[0].Command = []string{"sh", "-c", "echo done"}
			})
			pod = n.waitPod(t, pod, 20*time.Second, "Succeeded", func(p *v1.Pod) error {
				if p.Status.Phase != v1.PodSucceeded {
					return fmt.Errorf("phase %s", p.Status.Phase)
				}
				return nil
			})
			cs := pod.Status.ContainerStatuses[0]
			if term := cs.State.Terminated; term == nil || term.ExitCode != 0 || term.Reason != "Completed" || cs.RestartCount != 0 {
				t.Errorf("container status %+v", cs)
			}
			n.expectEvent(t, pod, "Started", "Started container main")
		})

		t.Run("NeverFailed", func(t *testing.T) {
			t.Parallel()
			pod := n.createPod(t, "fail", func(p *v1.Pod) {
				p.Spec.RestartPolicy = v1.RestartPolicyNever
				p.Spec.Containers[0].Command = []string{"sh", "-c", "exit 3"}
			})
			pod = n.waitPod(t, pod, 20*time.Second, "Failed", func(p *v1.Pod) error {
				if p.Status.Phase != v1.PodFailed {
					return fmt.Errorf("phase %s", p.Status.Phase)
				}
				return nil
			})
			if term := pod.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 3 || term.Reason != "Error" {
				t.Errorf("terminated %+v", term)
			}
		})

		t.Run("GracefulDeletion", func(t *testing.T) {
			t.Parallel()
			pod := n.createPod(t, "term", func(p *v1.Pod) {
				grace := int64(30)
				p.Spec.TerminationGracePeriodSeconds = &grace
				// PID 1 ignores SIGTERM without a handler: only the trap
				// makes it exit before the 30 s grace period.
				p.Spec.Containers[0].Command = []string{"sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; sleep 3600 & wait"}
			})
			n.waitPod(t, pod, 20*time.Second, "Running", func(p *v1.Pod) error {
				if p.Status.Phase != v1.PodRunning {
					return fmt.Errorf("phase %s", p.Status.Phase)
				}
				return nil
			})
			logPath := n.kubelet.LogPath(pod, "main", 0)
			eventually(t, 5*time.Second, "trap installed", func() error {
				if b, _ := os.ReadFile(logPath); !bytes.Contains(b, []byte("ready")) {
					return fmt.Errorf("log %q", b)
				}
				return nil
			})
			start := time.Now()
			if err := c.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 15*time.Second, "pod gone", func() error {
				_, err := c.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("still there (err %v)", err)
			})
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("deletion took %v: SIGTERM not delivered?", d)
			}
			n.expectEvent(t, pod, "Killing", "Stopping container main")
			left, err := n.rt.ListContainers(ctx, map[string]string{"io.kubernetes.pod.uid": string(pod.UID)})
			if err != nil || len(left) != 0 {
				t.Errorf("containers left: %v (err %v)", left, err)
			}
			if _, err := os.Stat("/run/netns/" + netnsName(pod.UID)); !os.IsNotExist(err) {
				t.Errorf("pod netns not deleted: %v", err)
			}
		})

		t.Run("ConfigMapEnvAndVolume", func(t *testing.T) {
			t.Parallel()
			cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kl-cm", Namespace: "default"},
				Data: map[string]string{"greeting": "hello from cm", "app.conf": "port=8080\n"}}
			if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			pod := n.createPod(t, "cm", func(p *v1.Pod) {
				ct := &p.Spec.Containers[0]
				ct.Command = []string{"sh", "-c", "echo \"greeting=$GREETING name=$POD_NAME ip=$POD_IP node=$NODE x=$(X)\"; sleep 3600"}
				ct.Env = []v1.EnvVar{
					{Name: "GREETING", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{
						LocalObjectReference: v1.LocalObjectReference{Name: "kl-cm"}, Key: "greeting"}}},
					{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
					{Name: "NODE", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
					{Name: "X", Value: "$(POD_NAME)-x"},
				}
				ct.VolumeMounts = []v1.VolumeMount{{Name: "cfg", MountPath: "/etc/cfg"}}
				p.Spec.Volumes = []v1.Volume{{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
					LocalObjectReference: v1.LocalObjectReference{Name: "kl-cm"}}}}}
			})
			pod = n.waitPod(t, pod, 20*time.Second, "Running", func(p *v1.Pod) error {
				if p.Status.Phase != v1.PodRunning {
					return fmt.Errorf("phase %s", p.Status.Phase)
				}
				return nil
			})
			want := fmt.Sprintf("greeting=hello from cm name=%s ip=%s node=%s x=%s-x", pod.Name, pod.Status.PodIP, n.name, pod.Name)
			eventually(t, 5*time.Second, "env in log", func() error {
				b, _ := os.ReadFile(n.kubelet.LogPath(pod, "main", 0))
				if !bytes.Contains(b, []byte(want)) {
					return fmt.Errorf("log %q, want %q", b, want)
				}
				return nil
			})
			id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
			var out, errOut bytes.Buffer
			code, err := n.rt.Exec(ctx, id, []string{"cat", "/etc/cfg/app.conf"}, nil, &out, &errOut, false)
			if err != nil || code != 0 || out.String() != "port=8080\n" {
				t.Errorf("exec cat: code %d err %v out %q stderr %q", code, err, out.String(), errOut.String())
			}
		})

		t.Run("MissingConfigMap", func(t *testing.T) {
			t.Parallel()
			pod := n.createPod(t, "nocm", func(p *v1.Pod) {
				p.Spec.Containers[0].Env = []v1.EnvVar{{Name: "A", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{
					LocalObjectReference: v1.LocalObjectReference{Name: "does-not-exist"}, Key: "k"}}}}
			})
			n.waitPod(t, pod, 20*time.Second, "CreateContainerConfigError", func(p *v1.Pod) error {
				if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil {
					return fmt.Errorf("status %+v", p.Status.ContainerStatuses)
				}
				w := p.Status.ContainerStatuses[0].State.Waiting
				if w.Reason != "CreateContainerConfigError" || w.Message != `configmap "does-not-exist" not found` || p.Status.Phase != v1.PodPending {
					return fmt.Errorf("waiting %+v phase %s", w, p.Status.Phase)
				}
				return nil
			})
		})

		t.Run("InitContainerAndEmptyDir", func(t *testing.T) {
			t.Parallel()
			pod := n.createPod(t, "init", func(p *v1.Pod) {
				p.Spec.Volumes = []v1.Volume{{Name: "work", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}}
				mount := []v1.VolumeMount{{Name: "work", MountPath: "/work"}}
				p.Spec.InitContainers = []v1.Container{{Name: "prep", Image: n.image, VolumeMounts: mount,
					Command: []string{"sh", "-c", "echo prepared > /work/msg"}}}
				p.Spec.Containers[0].VolumeMounts = mount
				p.Spec.Containers[0].Command = []string{"sh", "-c", "cat /work/msg; sleep 3600"}
			})
			pod = n.waitPod(t, pod, 20*time.Second, "Running", func(p *v1.Pod) error {
				if p.Status.Phase != v1.PodRunning || !podCondition(p, v1.PodInitialized) {
					return fmt.Errorf("phase %s", p.Status.Phase)
				}
				return nil
			})
			if term := pod.Status.InitContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 0 {
				t.Errorf("init status %+v", pod.Status.InitContainerStatuses)
			}
			eventually(t, 5*time.Second, "main read the init container's file", func() error {
				b, _ := os.ReadFile(n.kubelet.LogPath(pod, "main", 0))
				if !bytes.Contains(b, []byte("prepared")) {
					return fmt.Errorf("log %q", b)
				}
				return nil
			})
		})

		t.Run("ReadinessProbes", func(t *testing.T) {
			t.Parallel()
			pod := n.createPod(t, "ready", func(p *v1.Pod) {
				p.Spec.Containers[0].Command = []string{"sh", "-c", "sleep 2; touch /tmp/ready; sleep 3600"}
				p.Spec.Containers[0].ReadinessProbe = &v1.Probe{PeriodSeconds: 1,
					ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"cat", "/tmp/ready"}}}}
				// httpd answers only once the files exist; the httpGet
				// probe goes from the node namespace over the bridge.
				p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: "web", Image: n.image,
					Command:        []string{"sh", "-c", "mkdir -p /www; echo ok > /www/index.html; sleep 1; exec httpd -f -p 8080 -h /www"},
					Ports:          []v1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					ReadinessProbe: &v1.Probe{PeriodSeconds: 1, ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}},
					LivenessProbe:  &v1.Probe{PeriodSeconds: 1, ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(8080)}}, InitialDelaySeconds: 3},
				})
			})
			n.waitPod(t, pod, 20*time.Second, "Running but not Ready", func(p *v1.Pod) error {
				if p.Status.Phase != v1.PodRunning || podCondition(p, v1.PodReady) {
					return fmt.Errorf("phase %s ready %v", p.Status.Phase, podCondition(p, v1.PodReady))
				}
				return nil
			})
			pod = n.waitPod(t, pod, 20*time.Second, "Ready", func(p *v1.Pod) error {
				if !podCondition(p, v1.PodReady) {
					return fmt.Errorf("not ready: %+v", p.Status.Conditions)
				}
				return nil
			})
			for _, cs := range pod.Status.ContainerStatuses {
				if !cs.Ready || cs.RestartCount != 0 {
					t.Errorf("status %+v", cs)
				}
			}
		})

		t.Run("LivenessRestart", func(t *testing.T) {
			t.Parallel()
			pod := n.createPod(t, "live", func(p *v1.Pod) {
				grace := int64(1)
				p.Spec.TerminationGracePeriodSeconds = &grace
				p.Spec.Containers[0].Command = []string{"sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"}
				p.Spec.Containers[0].LivenessProbe = &v1.Probe{PeriodSeconds: 1, FailureThreshold: 1,
					ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}}}
			})
			n.waitPod(t, pod, 30*time.Second, "restarted by liveness", func(p *v1.Pod) error {
				if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 1 {
					return fmt.Errorf("status %+v", p.Status.ContainerStatuses)
				}
				return nil
			})
			n.expectEvent(t, pod, "Unhealthy", "Liveness probe failed")
			n.expectEvent(t, pod, "Killing", "Container main failed liveness probe, will be restarted")
		})
	})
	if t.Failed() || running == nil {
		return
	}

	t.Run("RestartAdopts", func(t *testing.T) {
		before := running.Status.ContainerStatuses[0]
		// A pod deleted while the kubelet is down is cleaned up at start.
		gone := n.createPod(t, "gone", func(p *v1.Pod) {})
		gone = n.waitPod(t, gone, 20*time.Second, "Running", func(p *v1.Pod) error {
			if p.Status.Phase != v1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})

		n.stopKubelet()
		if err := n.rt.Close(); err != nil {
			t.Fatalf("close runtime: %v", err)
		}
		zero := int64(0)
		if err := c.Client.CoreV1().Pods("default").Delete(ctx, gone.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		n.startRuntime()
		n.startKubelet()

		eventually(t, 20*time.Second, "deleted pod's containers removed", func() error {
			left, err := n.rt.ListContainers(ctx, map[string]string{"io.kubernetes.pod.uid": string(gone.UID)})
			if err != nil || len(left) != 0 {
				return fmt.Errorf("left %d (err %v)", len(left), err)
			}
			if _, err := os.Stat("/run/netns/" + netnsName(gone.UID)); !os.IsNotExist(err) {
				return fmt.Errorf("netns still there: %v", err)
			}
			return nil
		})
		// Give the new kubelet time to sync the pod, then check it kept
		// the container (no restart, same ID) and still reports Ready.
		time.Sleep(2 * time.Second)
		pod := n.waitPod(t, running, 10*time.Second, "still Running", func(p *v1.Pod) error {
			if p.Status.Phase != v1.PodRunning || !podReady(p) {
				return fmt.Errorf("phase %s ready %v", p.Status.Phase, podReady(p))
			}
			return nil
		})
		after := pod.Status.ContainerStatuses[0]
		if after.ContainerID != before.ContainerID || after.RestartCount != before.RestartCount || pod.Status.PodIP != running.Status.PodIP {
			t.Errorf("container not adopted: before %s/%d/%s after %s/%d/%s", before.ContainerID, before.RestartCount, running.Status.PodIP,
				after.ContainerID, after.RestartCount, pod.Status.PodIP)
		}
		// The adopted container is still managed: deleting the pod works.
		if err := c.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "adopted pod deleted", func() error {
			if _, err := c.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (err %v)", err)
			}
			return nil
		})
	})
}

// createPod creates a busybox pod bound to the node and deletes it (and
// waits for the kubelet to confirm) when the test ends.
func (n *node) createPod(t *testing.T, name string, mutate func(*v1.Pod)) *v1.Pod {
	t.Helper()
	return n.createPodFor(t, t, name, mutate)
}

// createPodFor is createPod with the deletion at the end of owner (a
// parent test) instead of t.
func (n *node) createPodFor(t, owner *testing.T, name string, mutate func(*v1.Pod)) *v1.Pod {
	t.Helper()
	grace := int64(2) // busybox sh as PID 1 ignores SIGTERM: keep deletions short
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s", name, n.name), Namespace: "default"},
		Spec: v1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			NodeName:                      n.name,
			Containers:                    []v1.Container{{Name: "main", Image: n.image, Command: []string{"sleep", "3600"}}},
		},
	}
	mutate(pod)
	created, err := n.client.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	owner.Cleanup(func() {
		t := owner
		ctx := context.Background()
		one := int64(1)
		err := n.client.CoreV1().Pods("default").Delete(ctx, created.Name, metav1.DeleteOptions{GracePeriodSeconds: &one,
			Preconditions: &metav1.Preconditions{UID: &created.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return
		}
		if err != nil {
			t.Errorf("delete pod: %v", err)
			return
		}
		if n.cancel == nil {
			return // no kubelet to confirm
		}
		eventually(t, 15*time.Second, "kubelet confirms deletion of "+created.Name, func() error {
			p, err := n.client.CoreV1().Pods("default").Get(ctx, created.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && p.UID != created.UID) {
				return nil
			}
			return fmt.Errorf("still there (err %v)", err)
		})
	})
	return created
}

// waitPod polls the pod until cond holds and returns it.
func (n *node) waitPod(t *testing.T, pod *v1.Pod, timeout time.Duration, what string, cond func(*v1.Pod) error) *v1.Pod {
	t.Helper()
	var got *v1.Pod
	eventually(t, timeout, pod.Name+": "+what, func() error {
		p, err := n.client.CoreV1().Pods(pod.Namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got = p
		return cond(p)
	})
	return got
}

// expectEvent waits for an event of the kubelet about the pod.
func (n *node) expectEvent(t *testing.T, pod *v1.Pod, reason, msgPrefix string) {
	t.Helper()
	sel := fields.Set{"involvedObject.name": pod.Name, "involvedObject.uid": string(pod.UID)}.AsSelector().String()
	eventually(t, 10*time.Second, fmt.Sprintf("event %s %q", reason, msgPrefix), func() error {
		evs, err := n.client.CoreV1().Events(pod.Namespace).List(context.Background(), metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.InvolvedObject.UID != pod.UID {
				continue
			}
			if e.Reason == reason && strings.HasPrefix(e.Message, msgPrefix) && e.Source.Component == "kubelet" && e.Source.Host == n.name {
				return nil
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return fmt.Errorf("seen %q", seen)
	})
}

func podCondition(p *v1.Pod, t v1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func podReady(p *v1.Pod) bool { return podCondition(p, v1.PodReady) }
