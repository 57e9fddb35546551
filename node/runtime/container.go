package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Labels the runtime sets on every container. The first two carry the
// Kubernetes identity (the same keys CRI runtimes use); the others are
// the runtime's own state, kept in containerd so a restarted kubelet
// sees it.
const (
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"

	labelManaged   = "io.synod.runtime/managed"
	labelLogPath   = "io.synod.runtime/log-path"
	labelImageID   = "io.synod.runtime/image-id"
	labelStartedAt = "io.synod.runtime/started-at"
	labelOOMKilled = "io.synod.runtime/oom-killed"
)

// cpuPeriod is the CFS period for CPU limits (Kubernetes' default, 100 ms).
const cpuPeriod = 100000

// ErrStartFailed wraps a failure to start the container's process (for
// example the command does not exist): Kubernetes' StartError.
var ErrStartFailed = errors.New("container start failed")

// Mount is a host directory (or file) bind-mounted into the container:
// the emptyDir, hostPath, ConfigMap and Secret directories the kubelet
// prepares.
type Mount struct {
	HostPath      string
	ContainerPath string
	ReadOnly      bool
}

// ContainerSpec describes one container to create.
type ContainerSpec struct {
	// ID is the containerd container ID: unique, [A-Za-z0-9._-], at most
	// 76 characters (NewContainerID makes one).
	ID     string
	PodUID string
	Name   string
	// Image must already be present (EnsureImage); it is normalized.
	Image string
	// Command replaces the image's entrypoint (and drops its cmd), Args
	// replace its cmd: Kubernetes' command/args semantics.
	Command    []string
	Args       []string
	Env        []string // "NAME=value", after the image's environment
	WorkingDir string
	Mounts     []Mount
	// NetNSPath joins an existing network namespace (the pod's, created
	// by the pod network code). Empty with HostNetwork false gives the
	// container a fresh namespace with only loopback.
	NetNSPath   string
	HostNetwork bool
	Hostname    string
	// CPULimitMilli is a CFS quota (0: none); CPURequestMilli sets
	// cpu.shares (0: the default); MemoryLimitBytes sets
	// memory.limit_in_bytes (0: none).
	CPULimitMilli    int64
	CPURequestMilli  int64
	MemoryLimitBytes int64
	// Labels are extra container labels (for ListContainers selectors).
	Labels map[string]string
	// LogPath receives stdout and stderr in the CRI log format; empty
	// discards the output.
	LogPath string
}

// Phase is a container's lifecycle state.
type Phase string

const (
	Created Phase = "Created" // created, never started (or its start failed)
	Running Phase = "Running"
	Exited  Phase = "Exited"
	Unknown Phase = "Unknown"
)

// State is what the kubelet needs for a containerStatus.
type State struct {
	ID        string
	Phase     Phase
	ExitCode  int
	OOMKilled bool
	PID       uint32
	CreatedAt time.Time
	// StartedAt and FinishedAt are zero until the container started or
	// exited.
	StartedAt  time.Time
	FinishedAt time.Time
	Image      string
	ImageID    string
	LogPath    string
	// Labels are all the container's labels, including LabelPodUID and
	// LabelContainerName.
	Labels map[string]string
}

// NewContainerID returns a random 64-hex-digit ID, as CRI runtimes use.
func NewContainerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// CreateContainer creates the container and its root filesystem snapshot;
// StartContainer runs it.
func (r *Runtime) CreateContainer(ctx context.Context, spec ContainerSpec) (err error) {
	defer r.metrics.observe("create_container", time.Now(), &err)
	if spec.ID == "" {
		return errors.New("runtime: create container: empty ID")
	}
	if spec.LogPath != "" && !filepath.IsAbs(spec.LogPath) {
		return fmt.Errorf("runtime: create container %s: log path %q is not absolute", spec.ID, spec.LogPath)
	}
	ctx = r.nsCtx(ctx)
	name, err := NormalizeImage(spec.Image)
	if err != nil {
		return fmt.Errorf("runtime: create container %s: %w", spec.ID, err)
	}
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		return fmt.Errorf("runtime: create container %s: image %s: %w", spec.ID, name, err)
	}
	imgSpec, err := img.Spec(ctx)
	if err != nil {
		return fmt.Errorf("runtime: create container %s: image %s config: %w", spec.ID, name, err)
	}
	args := processArgs(imgSpec.Config.Entrypoint, imgSpec.Config.Cmd, spec.Command, spec.Args)
	if len(args) == 0 {
		return fmt.Errorf("runtime: create container %s: no command: the image %s has none and the spec gives none", spec.ID, name)
	}

	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithProcessArgs(args...),
		oci.WithEnv(spec.Env),
	}
	if spec.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkingDir))
	}
	if spec.Hostname != "" {
		opts = append(opts, oci.WithHostname(spec.Hostname))
	}
	// The container's own cgroup, read-only, as CRI runtimes mount it
	// (apps read their memory limit there).
	mounts := []specs.Mount{{
		Destination: "/sys/fs/cgroup",
		Type:        "cgroup",
		Source:      "cgroup",
		Options:     []string{"nosuid", "noexec", "nodev", "relatime", "ro"},
	}}
	for _, m := range spec.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		mounts = append(mounts, specs.Mount{
			Destination: m.ContainerPath,
			Type:        "bind",
			Source:      m.HostPath,
			Options:     []string{"rbind", "rprivate", mode},
		})
	}
	opts = append(opts, oci.WithMounts(mounts))
	switch {
	case spec.HostNetwork:
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	case spec.NetNSPath != "":
		if _, err := os.Stat(spec.NetNSPath); err != nil {
			return fmt.Errorf("runtime: create container %s: network namespace: %w", spec.ID, err)
		}
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNSPath}))
	}
	if spec.MemoryLimitBytes > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(spec.MemoryLimitBytes)))
	}
	if spec.CPULimitMilli > 0 {
		// Kubernetes' milliCPUToQuota, with its 1 ms minimum.
		quota := max(spec.CPULimitMilli*cpuPeriod/1000, 1000)
		opts = append(opts, oci.WithCPUCFS(quota, cpuPeriod))
	}
	if spec.CPURequestMilli > 0 {
		opts = append(opts, oci.WithCPUShares(uint64(max(spec.CPURequestMilli*1024/1000, 2))))
	}

	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[labelManaged] = "true"
	labels[LabelPodUID] = spec.PodUID
	labels[LabelContainerName] = spec.Name
	labels[labelImageID] = ""
	if conf, err := img.Config(ctx); err == nil {
		labels[labelImageID] = conf.Digest.String()
	}
	if spec.LogPath != "" {
		labels[labelLogPath] = spec.LogPath
	}

	_, err = r.client.NewContainer(ctx, spec.ID,
		containerd.WithImage(img),
		containerd.WithSnapshotter(Snapshotter),
		containerd.WithNewSnapshot(spec.ID, img),
		containerd.WithContainerLabels(labels),
		containerd.WithRuntime("io.containerd.runc.v2", nil),
		containerd.WithNewSpec(opts...),
	)
	if err != nil {
		// A failed NewContainer may leave the snapshot behind.
		_ = r.client.SnapshotService(Snapshotter).Remove(ctx, spec.ID)
		return fmt.Errorf("runtime: create container %s: %w", spec.ID, err)
	}
	return nil
}

// processArgs applies Kubernetes' rules: command replaces the entrypoint
// and ignores the image's cmd; args replace the cmd.
func processArgs(entrypoint, cmd, command, args []string) []string {
	if len(command) > 0 {
		entrypoint, cmd = command, nil
	}
	if len(args) > 0 {
		cmd = args
	}
	return append(append([]string{}, entrypoint...), cmd...)
}

// StartContainer starts a created container's process, its output going
// to the spec's LogPath. A process that cannot start (missing binary,
// bad working dir) gives an error wrapping ErrStartFailed and leaves the
// container Created, so it can still be removed.
func (r *Runtime) StartContainer(ctx context.Context, id string) (err error) {
	defer r.metrics.observe("start_container", time.Now(), &err)
	ctx = r.nsCtx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("runtime: start container %s: %w", id, err)
	}
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return fmt.Errorf("runtime: start container %s: %w", id, err)
	}
	if _, err := c.Task(ctx, nil); err == nil {
		return fmt.Errorf("runtime: start container %s: already started", id)
	}
	logPath := info.Labels[labelLogPath]
	var lio *logIO
	creator := cio.NullIO
	if logPath != "" {
		dir := r.fifoDir(id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("runtime: start container %s: %w", id, err)
		}
		creator = func(string) (cio.IO, error) {
			l, err := newLogIO(r.ctx, cio.Config{Stdout: dir + "/stdout", Stderr: dir + "/stderr"}, logPath, true)
			lio = l
			return l, err
		}
	}
	task, err := c.NewTask(ctx, creator)
	if err != nil {
		return fmt.Errorf("runtime: start container %s: %w: %v", id, ErrStartFailed, err)
	}
	// Wait before Start, or a fast exit can be missed.
	exitC, err := task.Wait(r.ctx)
	if err != nil {
		r.deleteTask(ctx, task)
		return fmt.Errorf("runtime: start container %s: wait: %w", id, err)
	}
	// Taken before Start: a fast process may finish before Start returns,
	// and startedAt must not be after finishedAt.
	startedAt := time.Now().UTC()
	if err := task.Start(ctx); err != nil {
		r.deleteTask(ctx, task)
		return fmt.Errorf("runtime: start container %s: %w: %v", id, ErrStartFailed, err)
	}
	if _, err := c.SetLabels(ctx, map[string]string{labelStartedAt: startedAt.Format(time.RFC3339Nano)}); err != nil {
		r.log.Warn("record container start time", "id", id, "err", err)
	}
	r.watch(id, exitC, lio)
	return nil
}

// watch tracks a started (or re-attached) task: when it exits, the log
// copier drains and closes.
func (r *Runtime) watch(id string, exitC <-chan containerd.ExitStatus, lio *logIO) {
	if lio != nil {
		r.mu.Lock()
		r.attached[id] = lio
		r.mu.Unlock()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-exitC:
		case <-r.ctx.Done():
			return // Close detaches the copier
		}
		if lio != nil {
			lio.drain(5 * time.Second)
			r.mu.Lock()
			if r.attached[id] == lio {
				delete(r.attached, id)
			}
			r.mu.Unlock()
		}
	}()
}

// LogDone reports whether container id's log file is complete: the
// container is not running and its output has been copied. It is the
// Exited condition for following a log (LogOptions.Exited).
func (r *Runtime) LogDone(ctx context.Context, id string) bool {
	st, err := r.ContainerStatus(ctx, id)
	if err == nil && st.Phase == Running {
		return false
	}
	r.mu.Lock()
	lio := r.attached[id]
	r.mu.Unlock()
	if lio == nil {
		return true
	}
	select {
	case <-lio.done:
		return true
	default:
		return false
	}
}

// deleteTask removes a task that failed to start, killing it if needed.
func (r *Runtime) deleteTask(ctx context.Context, task containerd.Task) {
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		r.log.Warn("delete failed task", "id", task.ID(), "err", err)
	}
}

// StopContainer sends SIGTERM and, if the container has not exited after
// grace, SIGKILL; it returns once the container has exited. Stopping a
// container that is not running is a no-op.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) (err error) {
	defer r.metrics.observe("stop_container", time.Now(), &err)
	ctx = r.nsCtx(ctx)
	task, err := r.task(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runtime: stop container %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("runtime: stop container %s: %w", id, err)
	}
	if st.Status == containerd.Stopped {
		return nil
	}
	exitC, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("runtime: stop container %s: %w", id, err)
	}
	if grace > 0 {
		if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("runtime: stop container %s: SIGTERM: %w", id, err)
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exitC:
			return nil
		case <-timer.C:
			r.log.Info("container ignored SIGTERM for its grace period; killing it", "id", id, "grace", grace)
		case <-ctx.Done():
			return fmt.Errorf("runtime: stop container %s: %w", id, ctx.Err())
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: stop container %s: SIGKILL: %w", id, err)
	}
	select {
	case <-exitC:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("runtime: stop container %s: waiting after SIGKILL: %w", id, ctx.Err())
	}
}

// RemoveContainer kills the container if it still runs and deletes its
// task, container record, snapshot and FIFOs. The log file stays (the
// kubelet removes it with the pod, after `kubectl logs --previous`).
// Removing a missing container is a no-op.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) (err error) {
	defer r.metrics.observe("remove_container", time.Now(), &err)
	ctx = r.nsCtx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runtime: remove container %s: %w", id, err)
	}
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		if st, err := task.Status(ctx); err == nil && st.Status != containerd.Stopped {
			if err := r.StopContainer(ctx, id, 0); err != nil {
				return fmt.Errorf("runtime: remove container %s: %w", id, err)
			}
		}
		if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("runtime: remove container %s: delete task: %w", id, err)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("runtime: remove container %s: %w", id, err)
	}
	r.mu.Lock()
	lio := r.attached[id]
	delete(r.attached, id)
	r.mu.Unlock()
	if lio != nil {
		lio.drain(time.Second)
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: remove container %s: %w", id, err)
	}
	if err := os.RemoveAll(r.fifoDir(id)); err != nil {
		return fmt.Errorf("runtime: remove container %s: fifos: %w", id, err)
	}
	return nil
}

// task loads a container's task without attaching IO.
func (r *Runtime) task(ctx context.Context, id string) (containerd.Task, error) {
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	return c.Task(ctx, nil)
}

// ContainerStatus reports a container's state; the error wraps
// errdefs.ErrNotFound for an unknown ID.
func (r *Runtime) ContainerStatus(ctx context.Context, id string) (State, error) {
	ctx = r.nsCtx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return State{}, fmt.Errorf("runtime: container %s: %w", id, err)
	}
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return State{}, fmt.Errorf("runtime: container %s: %w", id, err)
	}
	return r.state(ctx, c, info)
}

func (r *Runtime) state(ctx context.Context, c containerd.Container, info containers.Container) (State, error) {
	s := State{
		ID:        info.ID,
		Phase:     Created,
		CreatedAt: info.CreatedAt,
		Image:     info.Image,
		ImageID:   info.Labels[labelImageID],
		LogPath:   info.Labels[labelLogPath],
		Labels:    info.Labels,
		OOMKilled: info.Labels[labelOOMKilled] == "true",
	}
	if t, err := time.Parse(time.RFC3339Nano, info.Labels[labelStartedAt]); err == nil {
		s.StartedAt = t
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return s.lostTask(info), nil
	}
	if err != nil {
		return State{}, fmt.Errorf("runtime: container %s task: %w", info.ID, err)
	}
	st, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		return s.lostTask(info), nil
	}
	if err != nil {
		return State{}, fmt.Errorf("runtime: container %s task status: %w", info.ID, err)
	}
	s.PID = task.Pid()
	switch st.Status {
	case containerd.Created:
		s.Phase = Created
	case containerd.Running, containerd.Paused, containerd.Pausing:
		s.Phase = Running
	case containerd.Stopped:
		s.Phase = Exited
		s.ExitCode = int(st.ExitStatus)
		s.FinishedAt = st.ExitTime
		s.PID = 0
	default:
		s.Phase = Unknown
	}
	return s, nil
}

// lostTaskExitCode is what a container whose process vanished with its
// shim reports, as containerd's CRI plugin does for a task it cannot find
// after a restart.
const lostTaskExitCode = 255

// lostTask is the state of a container without a task. One that never
// started is Created; one that did has lost its process together with its
// shim (the whole worker was killed, containerd included): it is over,
// with an unknown exit, so the kubelet restarts it by its restart policy
// instead of waiting forever for a start that will not come.
func (s State) lostTask(info containers.Container) State {
	if s.StartedAt.IsZero() {
		return s
	}
	s.Phase = Exited
	s.ExitCode = lostTaskExitCode
	s.FinishedAt = info.UpdatedAt
	if s.FinishedAt.Before(s.StartedAt) {
		s.FinishedAt = s.StartedAt
	}
	return s
}

// ListContainers returns the state of every container this runtime
// created whose labels include all of selector (nil: all). A restarted
// kubelet uses it to find and adopt the containers it left running.
func (r *Runtime) ListContainers(ctx context.Context, selector map[string]string) ([]State, error) {
	ctx = r.nsCtx(ctx)
	filter := fmt.Sprintf("labels.%q==%s", labelManaged, "true")
	keys := make([]string, 0, len(selector))
	for k := range selector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		filter += fmt.Sprintf(",labels.%q==%s", k, strconv.Quote(selector[k]))
	}
	cs, err := r.client.Containers(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("runtime: list containers: %w", err)
	}
	out := make([]State, 0, len(cs))
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			return nil, fmt.Errorf("runtime: list containers: %w", err)
		}
		s, err := r.state(ctx, c, info)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// WaitContainer blocks until the container has exited and its output is
// in the log file, and returns its final state.
func (r *Runtime) WaitContainer(ctx context.Context, id string) (State, error) {
	nctx := r.nsCtx(ctx)
	task, err := r.task(nctx, id)
	if err != nil && !errdefs.IsNotFound(err) {
		return State{}, fmt.Errorf("runtime: wait for container %s: %w", id, err)
	}
	if err == nil {
		exitC, err := task.Wait(nctx)
		if err != nil {
			return State{}, fmt.Errorf("runtime: wait for container %s: %w", id, err)
		}
		select {
		case <-exitC:
		case <-ctx.Done():
			return State{}, fmt.Errorf("runtime: wait for container %s: %w", id, ctx.Err())
		}
	}
	r.mu.Lock()
	lio := r.attached[id]
	r.mu.Unlock()
	if lio != nil {
		select {
		case <-lio.done:
		case <-ctx.Done():
			return State{}, fmt.Errorf("runtime: wait for container %s logs: %w", id, ctx.Err())
		}
	}
	return r.ContainerStatus(ctx, id)
}

// reattach resumes log copying for containers that are still running
// (after a kubelet restart).
func (r *Runtime) reattach(ctx context.Context) error {
	ctx = r.nsCtx(ctx)
	cs, err := r.client.Containers(ctx, fmt.Sprintf("labels.%q==true", labelManaged))
	if err != nil {
		return err
	}
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			return err
		}
		logPath := info.Labels[labelLogPath]
		if logPath == "" {
			continue
		}
		// Only FIFOs under our StateDir are ours: another client of the
		// daemon (`synod image import`, a second kubelet on a shared
		// daemon) must not steal a container's output.
		if _, err := os.Stat(r.fifoDir(info.ID)); err != nil {
			continue
		}
		task, err := c.Task(ctx, nil)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		st, err := task.Status(ctx)
		if err != nil || st.Status != containerd.Running {
			continue
		}
		var lio *logIO
		task, err = c.Task(ctx, func(set *cio.FIFOSet) (cio.IO, error) {
			if set == nil {
				return nil, errors.New("task has no FIFOs")
			}
			l, err := newLogIO(r.ctx, set.Config, logPath, false)
			lio = l
			return l, err
		})
		if err != nil {
			if lio != nil {
				lio.Cancel()
				_ = lio.Close()
			}
			r.log.Warn("re-attach container logs", "id", info.ID, "err", err)
			continue
		}
		exitC, err := task.Wait(r.ctx)
		if err != nil {
			lio.Cancel()
			_ = lio.Close()
			return err
		}
		r.log.Info("re-attached running container", "id", info.ID, "log", logPath)
		r.watch(info.ID, exitC, lio)
	}
	return nil
}

// closeAttached detaches every log copier (Close).
func (r *Runtime) closeAttached() {
	r.mu.Lock()
	ls := r.attached
	r.attached = map[string]*logIO{}
	r.mu.Unlock()
	for _, l := range ls {
		l.Cancel()
		l.Wait()
		_ = l.Close()
	}
}
