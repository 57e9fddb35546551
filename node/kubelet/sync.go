package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"

	"synod/node/runtime"
)

// syncPod sets up the pod's sandbox and volumes, runs its init containers
// one after the other and then its containers, restarting them by the
// restart policy with crash-loop backoff.
func (w *podWorker) syncPod(ctx context.Context) {
	pod := w.pod
	for _, r := range w.recs {
		r.waitReason, r.waitMessage = "", ""
	}
	if !w.ensureSandbox(ctx) {
		return
	}
	if !w.ensureVolumes(ctx) {
		return
	}
	policy := pod.Spec.RestartPolicy
	w.initDone = false
	for _, c := range pod.Spec.InitContainers {
		r := w.rec(c.Name, true)
		if r.cur == nil {
			w.start(ctx, c, r)
			return
		}
		if r.cur.state.Phase == runtime.Running {
			return // wait for it to finish
		}
		code, exited := r.cur.exited()
		if !exited {
			return // being started
		}
		if code == 0 {
			continue
		}
		if policy == v1.RestartPolicyNever {
			w.initFailed = true
			return
		}
		w.restart(ctx, c, r)
		return
	}
	w.initDone = true
	for _, c := range pod.Spec.Containers {
		r := w.rec(c.Name, false)
		if r.cur == nil {
			w.start(ctx, c, r)
			continue
		}
		if r.cur.state.Phase == runtime.Running {
			w.ensureProbes(c, r)
			if probe, msg := r.probes.failed(); probe != "" {
				w.kill(ctx, c, r, probe, msg)
			} else {
				continue
			}
		}
		code, exited := r.cur.exited()
		if !exited {
			continue
		}
		if policy == v1.RestartPolicyAlways || (policy == v1.RestartPolicyOnFailure && code != 0) {
			w.restart(ctx, c, r)
		}
	}
}

// ensureSandbox creates the pod's network namespace and network once.
func (w *podWorker) ensureSandbox(ctx context.Context) bool {
	if w.sandboxReady {
		return true
	}
	if err := os.MkdirAll(w.k.podDir(w.uid), 0o750); err != nil {
		w.sandboxFailed(fmt.Errorf("create pod directory: %w", err))
		return false
	}
	if w.pod.Spec.HostNetwork {
		w.podIP = w.k.cfg.NodeIP
		w.sandboxReady = true
		return true
	}
	n := w.k.net()
	if n == nil {
		w.waitAll("ContainerCreating", "network is not ready: node has no podCIDR yet")
		return false
	}
	path, err := w.k.cfg.NetNS.Create(netnsName(w.uid))
	if err != nil {
		w.sandboxFailed(fmt.Errorf("create network namespace: %w", err))
		return false
	}
	ip, err := n.Setup(ctx, string(w.uid), path)
	if err != nil {
		w.sandboxFailed(fmt.Errorf("set up pod network: %w", err))
		return false
	}
	w.netnsPath, w.podIP, w.sandboxReady, w.networkDown = path, ip.String(), true, false
	return true
}

func (w *podWorker) sandboxFailed(err error) {
	w.log.Warn("pod sandbox", "err", err)
	w.k.recorder.Eventf(w.pod, v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
	w.waitAll("ContainerCreating", "")
	w.kickAt(time.Now().Add(2 * time.Second))
}

// waitAll gives every container without a current attempt a waiting reason.
func (w *podWorker) waitAll(reason, msg string) {
	for _, c := range allContainers(w.pod) {
		r := w.rec(c.Name, isInit(w.pod, c.Name))
		if r.cur == nil {
			r.waitReason, r.waitMessage = reason, msg
		}
	}
}

func allContainers(pod *v1.Pod) []v1.Container {
	return append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
}

func isInit(pod *v1.Pod, name string) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// restart starts a new attempt of an exited container unless it is in
// crash-loop backoff: the first restart is immediate, then BackoffBase
// doubling to BackoffMax after each exit, measured from the exit; a
// container that ran BackoffReset before exiting starts over.
func (w *podWorker) restart(ctx context.Context, c v1.Container, r *containerRecord) {
	cfg := w.k.cfg
	finished := r.cur.finishedAt()
	started := r.cur.state.StartedAt
	if !started.IsZero() && finished.Sub(started) >= cfg.BackoffReset {
		r.backoff = 0
	}
	if r.backoff > 0 {
		until := finished.Add(r.backoff)
		if time.Now().Before(until) {
			r.waitReason = "CrashLoopBackOff"
			r.waitMessage = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
				r.backoff, c.Name, w.name, w.namespace, w.uid)
			if !r.backoffFor.Equal(finished) {
				r.backoffFor = finished
				w.k.recorder.Eventf(w.pod, v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)",
					c.Name, w.name, w.namespace, w.uid)
			}
			w.kickAt(until)
			return
		}
	}
	if w.start(ctx, c, r) {
		if r.backoff == 0 {
			r.backoff = cfg.BackoffBase
		} else {
			r.backoff = min(2*r.backoff, cfg.BackoffMax)
		}
	}
}

// kill stops a container whose liveness or startup probe failed; the
// restart policy then decides about the next attempt.
func (w *podWorker) kill(ctx context.Context, c v1.Container, r *containerRecord, probe, msg string) {
	w.k.recorder.Eventf(w.pod, v1.EventTypeNormal, "Killing", "Container %s failed %s probe, will be restarted", c.Name, probe)
	w.log.Info("killing container after failed probe", "container", c.Name, "probe", probe, "msg", msg)
	r.stopProbes()
	if err := w.k.rt.StopContainer(ctx, r.cur.id, gracePeriodOf(w.pod)); err != nil {
		w.log.Warn("stop container after failed probe", "container", c.Name, "err", err)
		return
	}
	if st, err := w.k.rt.ContainerStatus(ctx, r.cur.id); err == nil {
		r.cur.state = st
	}
}

// gracePeriodOf is the pod spec's terminationGracePeriodSeconds (30 s).
func gracePeriodOf(pod *v1.Pod) time.Duration {
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// start creates and starts a new attempt of c; it reports whether an
// attempt was made (a container created), which counts as a restart.
func (w *podWorker) start(ctx context.Context, c v1.Container, r *containerRecord) bool {
	pod := w.pod
	if !w.ensureImage(ctx, c, r) {
		return false
	}
	env, err := w.env(ctx, c)
	if err == nil {
		var mounts []runtime.Mount
		if mounts, err = w.mounts(c); err == nil {
			var etc []runtime.Mount
			if etc, err = w.etcMounts(c); err == nil {
				return w.create(ctx, c, r, env, append(mounts, etc...))
			}
		}
	}
	r.waitReason, r.waitMessage = "CreateContainerConfigError", err.Error()
	if r.configErrSent != err.Error() {
		r.configErrSent = err.Error()
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
	}
	w.kickAt(time.Now().Add(2 * time.Second))
	return false
}

func (w *podWorker) create(ctx context.Context, c v1.Container, r *containerRecord, env []string, mounts []runtime.Mount) bool {
	pod := w.pod
	r.configErrSent = ""
	next := 0
	if r.cur != nil {
		next = r.cur.restartCount + 1
	} else if r.prev != nil {
		next = r.prev.restartCount + 1
	}
	vars := envMap(env)
	spec := runtime.ContainerSpec{
		ID:          runtime.NewContainerID(),
		PodUID:      string(pod.UID),
		Name:        c.Name,
		Image:       c.Image,
		Command:     expandAll(c.Command, vars),
		Args:        expandAll(c.Args, vars),
		Env:         env,
		WorkingDir:  c.WorkingDir,
		Mounts:      mounts,
		NetNSPath:   w.netnsPath,
		HostNetwork: pod.Spec.HostNetwork,
		Hostname:    podHostname(pod),
		Labels: map[string]string{
			labelNode:         w.k.cfg.NodeName,
			labelPodName:      pod.Name,
			labelPodNamespace: pod.Namespace,
			labelRestartCount: strconv.Itoa(next),
			labelInit:         strconv.FormatBool(r.init),
		},
		LogPath: w.k.LogPath(pod, c.Name, next),
	}
	if q, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
		spec.CPULimitMilli = q.MilliValue()
	}
	if q, ok := c.Resources.Requests[v1.ResourceCPU]; ok {
		spec.CPURequestMilli = q.MilliValue()
	}
	if q, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
		spec.MemoryLimitBytes = q.Value()
	}
	if pod.Spec.HostNetwork {
		spec.Hostname = ""
	}
	if err := w.k.rt.CreateContainer(ctx, spec); err != nil {
		w.k.metrics.containerStarts.WithLabelValues("create_error").Inc()
		r.waitReason, r.waitMessage = "CreateContainerError", err.Error()
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
		w.kickAt(time.Now().Add(2 * time.Second))
		return false
	}
	w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Created", "Created container %s", c.Name)
	// The new attempt becomes current; the one before it is kept (for
	// lastState and `kubectl logs --previous`), older ones go.
	r.stopProbes()
	if r.cur != nil {
		if r.prev != nil {
			if err := w.k.rt.RemoveContainer(ctx, r.prev.id); err != nil {
				w.log.Warn("remove old container", "container", c.Name, "id", r.prev.id, "err", err)
			}
			_ = os.Remove(w.k.LogPath(pod, c.Name, r.prev.restartCount))
		}
		r.prev = r.cur
	}
	r.cur = &attempt{id: spec.ID, restartCount: next, state: runtime.State{ID: spec.ID, Phase: runtime.Created}}
	if err := w.k.rt.StartContainer(ctx, spec.ID); err != nil {
		w.k.metrics.containerStarts.WithLabelValues("start_error").Inc()
		msg := err.Error()
		if errors.Is(err, runtime.ErrStartFailed) {
			msg = strings.TrimPrefix(msg, "runtime: ")
		}
		r.cur.startErr, r.cur.failedAt = msg, time.Now()
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Failed", "Error: %v", msg)
		w.kickNow()
		return true
	}
	w.k.metrics.containerStarts.WithLabelValues("ok").Inc()
	w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Started", "Started container %s", c.Name)
	if st, err := w.k.rt.ContainerStatus(ctx, spec.ID); err == nil {
		r.cur.state = st
	} else {
		r.cur.state.Phase, r.cur.state.StartedAt = runtime.Running, time.Now()
	}
	w.watchExit(spec.ID)
	if !r.init {
		w.ensureProbes(c, r)
	}
	return true
}

// podHostname is the pod's hostname (spec.hostname or its name, at most
// 63 characters as the kubelet truncates).
func podHostname(pod *v1.Pod) string {
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// ensureImage makes c's image present by its pull policy, with
// Kubernetes' events and waiting reasons (ErrImagePull, ImagePullBackOff,
// ErrImageNeverPull, InvalidImageName).
func (w *podWorker) ensureImage(ctx context.Context, c v1.Container, r *containerRecord) bool {
	pod := w.pod
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = defaultPullPolicy(c.Image)
	}
	if policy != v1.PullAlways {
		if _, err := w.k.rt.GetImage(ctx, c.Image); err == nil {
			w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
			r.pullBackoff = 0
			return true
		}
	}
	if time.Now().Before(r.pullRetryAt) {
		r.waitReason = "ImagePullBackOff"
		r.waitMessage = fmt.Sprintf("Back-off pulling image %q", c.Image)
		w.kickAt(r.pullRetryAt)
		return false
	}
	if policy != v1.PullNever {
		w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	}
	start := time.Now()
	_, err := w.k.rt.EnsureImage(ctx, c.Image, runtime.PullPolicy(policy))
	if err == nil {
		w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s", c.Image, time.Since(start).Round(time.Millisecond))
		r.pullBackoff = 0
		return true
	}
	reason := "ErrImagePull"
	switch {
	case errors.Is(err, runtime.ErrImageNeverPull):
		reason = "ErrImageNeverPull"
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, reason, "Container image %q is not present with pull policy of Never", c.Image)
	case errors.Is(err, runtime.ErrInvalidImageName):
		reason = "InvalidImageName"
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "InspectFailed", "Failed to apply default image tag %q: %v", c.Image, err)
	default:
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", c.Image, err)
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Failed", "Error: ErrImagePull")
	}
	r.waitReason, r.waitMessage = reason, err.Error()
	if r.pullBackoff == 0 {
		r.pullBackoff = w.k.cfg.BackoffBase
	} else {
		r.pullBackoff = min(2*r.pullBackoff, w.k.cfg.BackoffMax)
	}
	r.pullRetryAt = time.Now().Add(r.pullBackoff)
	w.kickAt(r.pullRetryAt)
	return false
}

// defaultPullPolicy is the API's default: Always for :latest or untagged
// images, IfNotPresent otherwise.
func defaultPullPolicy(image string) v1.PullPolicy {
	if strings.Contains(image, "@") {
		return v1.PullIfNotPresent
	}
	name := image[strings.LastIndex(image, "/")+1:]
	if i := strings.LastIndex(name, ":"); i < 0 || name[i+1:] == "latest" {
		return v1.PullAlways
	}
	return v1.PullIfNotPresent
}
