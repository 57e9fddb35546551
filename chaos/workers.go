package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"synod/chaos/check"
)

// Workers live in namespaces synodch-w1, ... at 10.97.0.31, ...; their
// pods in namespaces synod-<pod uid> that the workers make. The workers'
// data dirs are listed in workersStateFile while they run, so that the next
// run can remove the pods of a run killed outright.
const (
	gossipPort       = 7946
	workersStateFile = "/run/lock/synod-chaos.workers"
	// TestImage is what `synod image busybox` builds; it is imported into
	// every worker's containerd, so no registry is needed.
	testImage     = "docker.io/library/busybox:synod-test"
	podsNamespace = "chaos-pods"
	podsName      = "chaos-steady"
)

func workerIP(j int) string       { return fmt.Sprintf("10.97.0.%d", 31+j) }
func workerNetns(j int) string    { return fmt.Sprintf("%sw%d", netnsPrefix, j+1) }
func workerVeth(j int) string     { return fmt.Sprintf("%sw%d", vethPrefix, j+1) }
func workerName(j int) string     { return fmt.Sprintf("w%d", j+1) }
func gossipAddr(ip string) string { return fmt.Sprintf("%s:%d", ip, gossipPort) }

// worker is one `synod worker` process.
type worker struct {
	name, ip, netns, dataDir, logPath string
	proc                              *exec.Cmd
	done                              chan struct{}
}

// startWorkers makes n worker namespaces on the bridge, starts `synod
// worker` in each and imports the test image into its containerd.
func (c *Cluster) startWorkers(ctx context.Context, n int) error {
	var dirs []string
	for j := range n {
		dirs = append(dirs, filepath.Join(c.cfg.Dir, workerName(j)))
	}
	if err := os.WriteFile(workersStateFile, []byte(strings.Join(dirs, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	tarball := filepath.Join(c.cfg.Dir, "busybox-image.tar")
	if out, err := exec.CommandContext(ctx, c.cfg.Binary, "image", "busybox", tarball).CombinedOutput(); err != nil {
		return fmt.Errorf("chaos: test image: %v: %s", err, strings.TrimSpace(string(out)))
	}
	for j := range n {
		w := &worker{name: workerName(j), ip: workerIP(j), netns: workerNetns(j), dataDir: dirs[j],
			logPath: filepath.Join(c.cfg.LogDir, workerName(j)+".log")}
		if err := setupNamespace(ctx, w.netns, workerVeth(j), w.ip); err != nil {
			return fmt.Errorf("chaos: namespace of %s: %w", w.name, err)
		}
		args := []string{"--net=/run/netns/" + w.netns, c.cfg.Binary, "worker", "--name", w.name, "--data-dir", w.dataDir,
			"--kubeconfig", c.KubeconfigPath(), "--gossip-addr", gossipAddr(w.ip), "--node-ip", w.ip}
		for _, m := range c.masters {
			args = append(args, "--server", m.apiURL, "--join", gossipAddr(m.ip))
		}
		logf, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		cmd := exec.Command("nsenter", args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // see Start: no Pdeathsig
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("chaos: start %s: %w", w.name, err)
		}
		w.proc, w.done = cmd, make(chan struct{})
		go func() {
			cmd.Wait()
			logf.Close()
			close(w.done)
		}()
		c.workers = append(c.workers, w)
		c.log.Info("worker started", "name", w.name, "pid", cmd.Process.Pid, "ip", w.ip)
	}
	for _, w := range c.workers {
		sock := filepath.Join(w.dataDir, "cri", "containerd", "containerd.sock")
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, err := exec.CommandContext(ctx, c.cfg.Binary, "image", "import", "--containerd-socket", sock, tarball).CombinedOutput()
			if err == nil {
				break
			}
			if time.Now().After(deadline) || isClosed(w.done) || ctx.Err() != nil {
				return fmt.Errorf("chaos: import the test image into %s: %v: %s", w.name, err, strings.TrimSpace(string(out)))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return nil
}

// podRecord is what must not change about a pod through the faults.
type podRecord struct {
	Name        string `json:"name"`
	UID         string `json:"uid"`
	Node        string `json:"node"`
	ContainerID string `json:"container_id"`
	Restarts    int32  `json:"restarts"`
}

// startSteadyPods creates a Deployment of sleeping busybox pods spread over
// the workers and waits (up to 2 minutes) until all run; it returns them.
func (c *Cluster) startSteadyPods(ctx context.Context, replicas int32) ([]podRecord, error) {
	kc := c.kube[0]
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podsNamespace}}
	labels := map[string]string{"app": podsName}
	zero := int64(0)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: podsName, Namespace: podsNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &zero,
					Containers: []corev1.Container{{Name: "sleep", Image: testImage, ImagePullPolicy: corev1.PullNever,
						Command: []string{"sleep", "86400"}}},
				},
			},
		},
	}
	for {
		_, err := kc.CoreV1().Namespaces().Create(cctx, ns, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			_, err = kc.AppsV1().Deployments(podsNamespace).Create(cctx, dep, metav1.CreateOptions{})
			if err == nil || apierrors.IsAlreadyExists(err) {
				break
			}
		}
		if !sleepCtx(cctx, 500*time.Millisecond) {
			return nil, fmt.Errorf("chaos: create the steady pods: %w", err)
		}
	}
	var last string
	for {
		pods, err := c.steadyPods(cctx)
		if err == nil {
			running := 0
			for _, p := range pods {
				if p.ContainerID != "" {
					running++
				}
			}
			last = fmt.Sprintf("%d of %d running", running, replicas)
			if running == int(replicas) && len(pods) == int(replicas) {
				return pods, nil
			}
		} else {
			last = err.Error()
		}
		if !sleepCtx(cctx, time.Second) {
			return nil, fmt.Errorf("chaos: steady pods not running after 2m: %s", last)
		}
	}
}

// steadyPods lists the Deployment's pods; ContainerID is empty for a pod
// whose container does not run.
func (c *Cluster) steadyPods(ctx context.Context) ([]podRecord, error) {
	var lastErr error
	for i := range c.masters {
		lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		list, err := c.kube[i].CoreV1().Pods(podsNamespace).List(lctx, metav1.ListOptions{LabelSelector: "app=" + podsName})
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		var out []podRecord
		for _, p := range list.Items {
			r := podRecord{Name: p.Name, UID: string(p.UID), Node: p.Spec.NodeName}
			if p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
				r.ContainerID = p.Status.ContainerStatuses[0].ContainerID
				r.Restarts = p.Status.ContainerStatuses[0].RestartCount
			}
			out = append(out, r)
		}
		sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
		return out, nil
	}
	return nil, lastErr
}

// checkSteadyPods compares the pods after the run with before: the same
// pods, on the same nodes, with the same running container.
func (c *Cluster) checkSteadyPods(ctx context.Context, before []podRecord) check.Result {
	r := check.Result{Name: "worker-pods-keep-running"}
	after, err := c.steadyPods(ctx)
	if err != nil {
		r.Evidence = "could not list the pods: " + err.Error()
		return r
	}
	now := map[string]podRecord{}
	for _, p := range after {
		now[p.UID] = p
	}
	var bad []string
	for _, p := range before {
		q, ok := now[p.UID]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("pod %s (%s) is gone", p.Name, p.UID))
		case q.ContainerID == "":
			bad = append(bad, fmt.Sprintf("pod %s on %s is not running", p.Name, p.Node))
		case q.ContainerID != p.ContainerID || q.Restarts != p.Restarts || q.Node != p.Node:
			bad = append(bad, fmt.Sprintf("pod %s: container %s (restarts %d) on %s became %s (restarts %d) on %s",
				p.Name, p.ContainerID, p.Restarts, p.Node, q.ContainerID, q.Restarts, q.Node))
		}
	}
	r.Details = map[string]any{"before": before, "after": after}
	if len(bad) > 0 {
		r.Evidence = fmt.Sprintf("%d of %d pods disturbed: %s", len(bad), len(before), strings.Join(bad, "; "))
		return r
	}
	r.Pass = true
	r.Evidence = fmt.Sprintf("%d pods on %d workers kept their running container through every fault", len(before), len(c.workers))
	return r
}

// stopWorkers deletes the steady pods (so the kubelets stop their
// containers and unmount their filesystems), stops the workers and removes
// what ran in their and their pods' namespaces.
func (c *Cluster) stopWorkers() error {
	if len(c.workers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range c.masters {
		if c.Running(i) && c.kube[i].AppsV1().Deployments(podsNamespace).Delete(ctx, podsName, metav1.DeleteOptions{}) == nil {
			zero := int64(0)
			c.kube[i].CoreV1().Pods(podsNamespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
				metav1.ListOptions{LabelSelector: "app=" + podsName})
			break
		}
	}
	for _, w := range c.workers {
		for ctx.Err() == nil && !isClosed(w.done) {
			entries, err := os.ReadDir(filepath.Join(w.dataDir, "kubelet", "pods"))
			if err != nil || len(entries) == 0 {
				break
			}
			sleepCtx(ctx, 250*time.Millisecond)
		}
	}
	for _, w := range c.workers {
		syscall.Kill(w.proc.Process.Pid, syscall.SIGTERM)
	}
	for _, w := range c.workers {
		select {
		case <-w.done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-w.proc.Process.Pid, syscall.SIGKILL)
			<-w.done
		}
	}
	return cleanupWorkerDirs()
}

// cleanupWorkerDirs removes the pod namespaces and mounts of the workers in
// workersStateFile (this run's, or a killed run's) and the file itself.
func cleanupWorkerDirs() error {
	b, err := os.ReadFile(workersStateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, dir := range strings.Fields(string(b)) {
		entries, _ := os.ReadDir(filepath.Join(dir, "kubelet", "pods"))
		for _, e := range entries {
			if _, err := os.Stat("/run/netns/synod-" + e.Name()); err == nil {
				if err := removeNetns("synod-" + e.Name()); err != nil {
					errs = append(errs, err)
				}
			}
		}
		unmountUnder(dir)
	}
	if err := os.Remove(workersStateFile); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unmountUnder lazily unmounts what is mounted below dir (root filesystems
// of containers that were killed), deepest first.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
