package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"synod/node/runtime"
)

// attempt is one container of a Kubernetes container: the restartCount-th
// run of it.
type attempt struct {
	id           string
	restartCount int
	state        runtime.State
	// startErr is why StartContainer failed (the container stays
	// Created): Kubernetes' StartError, exit code 128.
	startErr string
	failedAt time.Time
}

// exited reports whether the attempt is over, and its exit code.
func (a *attempt) exited() (code int, ok bool) {
	switch {
	case a.state.Phase == runtime.Exited:
		return a.state.ExitCode, true
	case a.startErr != "":
		return 128, true
	case a.state.Phase == runtime.Created && !a.failedAt.IsZero():
		return 128, true
	}
	return 0, false
}

func (a *attempt) finishedAt() time.Time {
	if !a.state.FinishedAt.IsZero() {
		return a.state.FinishedAt
	}
	return a.failedAt
}

// containerRecord is the worker's state for one container of the spec.
type containerRecord struct {
	name string
	init bool
	cur  *attempt // nil before the first create
	prev *attempt // the previous attempt, kept for lastState and logs

	backoff       time.Duration // crash-loop backoff after the current exit
	backoffFor    time.Time     // finishedAt the BackOff event was sent for
	pullBackoff   time.Duration
	pullRetryAt   time.Time
	waitReason    string // set by each sync for a container not running
	waitMessage   string
	probes        *probeSet // for cur, while it runs
	configErrSent string    // last config error an event was sent for
}

// podWorker runs one pod. Everything but kick is owned by its goroutine.
type podWorker struct {
	k         *Kubelet
	uid       types.UID
	namespace string
	name      string
	log       *slog.Logger
	kick      chan struct{}
	ctx       context.Context

	pod          *v1.Pod // the latest the worker saw
	loaded       bool
	netnsPath    string
	podIP        string
	sandboxReady bool
	volumesReady bool
	networkDown  bool // torn down after the pod finished
	recs         map[string]*containerRecord
	initDone     bool
	initFailed   bool
	lastWritten  *v1.PodStatus

	timerMu sync.Mutex
	timer   *time.Timer
	wakeAt  time.Time
}

func newPodWorker(k *Kubelet, pod *v1.Pod) *podWorker {
	return &podWorker{
		k:         k,
		uid:       pod.UID,
		namespace: pod.Namespace,
		name:      pod.Name,
		pod:       pod,
		log:       k.log.With("pod", pod.Namespace+"/"+pod.Name, "uid", pod.UID),
		kick:      make(chan struct{}, 1),
		recs:      map[string]*containerRecord{},
	}
}

func (w *podWorker) kickNow() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// kickAt makes the worker sync at t (the earliest of the times asked for).
func (w *podWorker) kickAt(t time.Time) {
	w.timerMu.Lock()
	defer w.timerMu.Unlock()
	if w.timer != nil && !w.wakeAt.IsZero() && !t.Before(w.wakeAt) && w.wakeAt.After(time.Now()) {
		return
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.wakeAt = t
	w.timer = time.AfterFunc(time.Until(t), w.kickNow)
}

func (w *podWorker) run(ctx context.Context) {
	w.ctx = ctx
	defer func() {
		w.timerMu.Lock()
		if w.timer != nil {
			w.timer.Stop()
		}
		w.timerMu.Unlock()
		for _, r := range w.recs {
			r.stopProbes()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		start := time.Now()
		done, err := w.sync(ctx)
		w.k.metrics.syncs.WithLabelValues(resultLabel(err)).Observe(time.Since(start).Seconds())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("pod sync failed; retrying", "err", err)
			w.kickAt(time.Now().Add(time.Second))
		}
		if done {
			w.log.Info("pod worker done")
			return
		}
	}
}

// sync brings the node in line with the pod once; done means the pod is
// gone and the worker can end.
func (w *podWorker) sync(ctx context.Context) (done bool, err error) {
	if !w.loaded {
		if err := w.load(ctx); err != nil {
			return false, err
		}
		w.loaded = true
	}
	pod, err := w.k.podLister.Pods(w.namespace).Get(w.name)
	if err != nil || pod.UID != w.uid {
		// Deleted from the API (force-deleted, or confirmed by us).
		if err := w.terminate(ctx, nil); err != nil {
			return false, err
		}
		return true, nil
	}
	w.pod = pod
	if pod.DeletionTimestamp != nil {
		if err := w.terminate(ctx, pod); err != nil {
			return false, err
		}
		return true, nil
	}
	w.refresh(ctx)
	if isTerminal(pod) {
		return false, w.finish(ctx)
	}
	w.syncPod(ctx)
	status := w.buildStatus()
	if err := w.writeStatus(ctx, status); err != nil {
		return false, err
	}
	if status.Phase == v1.PodSucceeded || status.Phase == v1.PodFailed {
		return false, w.finish(ctx)
	}
	return false, nil
}

func isTerminal(pod *v1.Pod) bool {
	return pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
}

// load adopts the pod's containers that the runtime already has (after a
// kubelet restart): the newest attempt per container is current, the one
// before it previous; older ones are removed.
func (w *podWorker) load(ctx context.Context) error {
	states, err := w.k.rt.ListContainers(ctx, map[string]string{runtime.LabelPodUID: string(w.uid)})
	if err != nil {
		return fmt.Errorf("list containers of pod: %w", err)
	}
	byName := map[string][]runtime.State{}
	for _, s := range states {
		byName[s.Labels[runtime.LabelContainerName]] = append(byName[s.Labels[runtime.LabelContainerName]], s)
	}
	for name, ss := range byName {
		sort.Slice(ss, func(i, j int) bool { return restartCountOf(ss[i]) < restartCountOf(ss[j]) })
		rec := w.rec(name, ss[0].Labels[labelInit] == "true")
		n := len(ss)
		for _, old := range ss[:max(0, n-2)] {
			if err := w.k.rt.RemoveContainer(ctx, old.ID); err != nil {
				w.log.Warn("remove old container", "container", name, "id", old.ID, "err", err)
			}
		}
		rec.cur = &attempt{id: ss[n-1].ID, restartCount: restartCountOf(ss[n-1]), state: ss[n-1]}
		if n > 1 {
			rec.prev = &attempt{id: ss[n-2].ID, restartCount: restartCountOf(ss[n-2]), state: ss[n-2]}
		}
		switch rec.cur.state.Phase {
		case runtime.Running:
			w.log.Info("adopted running container", "container", name, "id", rec.cur.id, "restartCount", rec.cur.restartCount)
			w.watchExit(rec.cur.id)
		case runtime.Created:
			// Created but never started when the last kubelet went away:
			// no start will come by itself, so count it as a failed start
			// and let the restart policy take over.
			rec.cur.startErr = "container was created but not started before the kubelet restarted"
			rec.cur.failedAt = time.Now()
		case runtime.Exited:
			w.log.Info("found exited container", "container", name, "id", rec.cur.id, "exitCode", rec.cur.state.ExitCode)
		}
	}
	return nil
}

func restartCountOf(s runtime.State) int {
	n, _ := strconv.Atoi(s.Labels[labelRestartCount])
	return n
}

func (w *podWorker) rec(name string, init bool) *containerRecord {
	r := w.recs[name]
	if r == nil {
		r = &containerRecord{name: name, init: init}
		w.recs[name] = r
	}
	return r
}

// watchExit kicks the worker when the container exits.
func (w *podWorker) watchExit(id string) {
	ctx := w.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	w.k.wg.Add(1)
	go func() {
		defer w.k.wg.Done()
		if _, err := w.k.rt.WaitContainer(ctx, id); err != nil && ctx.Err() == nil && !errdefs.IsNotFound(err) {
			w.log.Debug("wait for container", "id", id, "err", err)
		}
		w.kickNow()
	}()
}

// refresh reads the current attempts' states from the runtime.
func (w *podWorker) refresh(ctx context.Context) {
	for _, r := range w.recs {
		if r.cur == nil {
			continue
		}
		st, err := w.k.rt.ContainerStatus(ctx, r.cur.id)
		switch {
		case errdefs.IsNotFound(err):
			// Removed behind our back: start over (a new attempt).
			w.log.Warn("container disappeared from the runtime", "container", r.name, "id", r.cur.id)
			r.stopProbes()
			r.prev, r.cur = r.cur, nil
		case err != nil:
			w.log.Warn("container status", "container", r.name, "err", err)
		default:
			r.cur.state = st
			if st.Phase != runtime.Running {
				r.stopProbes()
			}
		}
	}
}

// gracePeriod is how long containers get between SIGTERM and SIGKILL.
func gracePeriod(pod *v1.Pod) time.Duration {
	switch {
	case pod == nil:
		return 0
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// stopAll stops the running containers in parallel with the grace period.
func (w *podWorker) stopAll(ctx context.Context, grace time.Duration, pod *v1.Pod) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(w.recs))
	for _, r := range w.recs {
		r.stopProbes()
		if r.cur == nil || r.cur.state.Phase != runtime.Running {
			continue
		}
		if pod != nil {
			w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Killing", "Stopping container %s", r.name)
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			if err := w.k.rt.StopContainer(ctx, id, grace); err != nil {
				errs <- err
			}
		}(r.cur.id)
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// terminate stops and removes everything of the pod and, if pod is still
// in the API, confirms its deletion (grace 0, UID precondition).
func (w *podWorker) terminate(ctx context.Context, pod *v1.Pod) error {
	grace := gracePeriod(pod)
	if pod == nil {
		// Gone from the API: there is nobody to wait for.
		grace = 0
	}
	if err := w.stopAll(ctx, grace, pod); err != nil {
		return fmt.Errorf("stop containers: %w", err)
	}
	for _, r := range w.recs {
		for _, a := range []*attempt{r.cur, r.prev} {
			if a == nil {
				continue
			}
			if err := w.k.rt.RemoveContainer(ctx, a.id); err != nil {
				return fmt.Errorf("remove container %s: %w", r.name, err)
			}
		}
		r.cur, r.prev = nil, nil
	}
	if err := w.teardownNetwork(ctx); err != nil {
		return err
	}
	if err := w.k.removePodFiles(w.namespace, w.name, w.uid); err != nil {
		return err
	}
	if pod == nil {
		return nil
	}
	zero := int64(0)
	err := w.k.client.CoreV1().Pods(w.namespace).Delete(ctx, w.name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &w.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("confirm pod deletion: %w", err)
	}
	w.log.Info("pod terminated and deleted")
	return nil
}

// teardownNetwork releases the pod's IP and deletes its namespace.
func (w *podWorker) teardownNetwork(ctx context.Context) error {
	if w.pod != nil && w.pod.Spec.HostNetwork {
		return nil
	}
	name := netnsName(w.uid)
	if n := w.k.net(); n != nil {
		if err := n.Teardown(ctx, string(w.uid), w.k.cfg.NetNS.Path(name)); err != nil {
			return fmt.Errorf("tear down pod network: %w", err)
		}
	} else if w.sandboxReady && w.k.cfg.Network != nil {
		return errors.New("tear down pod network: network not ready")
	}
	if err := w.k.cfg.NetNS.Delete(name); err != nil {
		return fmt.Errorf("delete pod network namespace: %w", err)
	}
	w.sandboxReady = false
	return nil
}

// finish is for a pod that reached Succeeded or Failed: nothing may run,
// and its network is released (the containers stay for their logs until
// the pod is deleted).
func (w *podWorker) finish(ctx context.Context) error {
	if err := w.stopAll(ctx, gracePeriod(w.pod), w.pod); err != nil {
		return fmt.Errorf("stop containers of finished pod: %w", err)
	}
	if w.networkDown {
		return nil
	}
	if err := w.teardownNetwork(ctx); err != nil {
		return err
	}
	w.networkDown = true
	return nil
}

// removePodFiles deletes the pod's volumes and logs.
func (k *Kubelet) removePodFiles(ns, name string, uid types.UID) error {
	if err := removeAllVolumes(k.podDir(uid)); err != nil {
		return err
	}
	if err := os.RemoveAll(k.podLogDir(ns, name, uid)); err != nil {
		return fmt.Errorf("remove pod logs: %w", err)
	}
	return nil
}

// removeAllVolumes removes a pod directory. Volumes are plain directories
// bind-mounted only inside containers' mount namespaces, so nothing here
// is a mount point; refuse to follow hostPath-like symlinks anyway.
func removeAllVolumes(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove pod dir %s: %w", filepath.Base(dir), err)
	}
	return nil
}
