package launch

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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Workers live in network namespaces of their own, so their iptables rules,
// bridges and routes do not collide with each other or with the host. The
// namespaces hang off one host bridge; the masters' APIs and gossip listen on
// the bridge's address so the workers can reach them. One cluster with
// workers per machine: the bridge and its subnet are fixed.
const (
	hostBridge   = "synodup0"
	hostBridgeIP = "10.99.0.1"
	workerSubnet = "10.99.0.%d/24"
)

// workersLockFile serializes clusters with workers on one machine: they
// share the host bridge, its subnet and the namespace names. A second one
// (another test package, another synod up) waits for the first to stop.
const workersLockFile = "/run/lock/synod-up-workers.lock"

// lockWorkers takes the machine-wide workers lock, waiting until ctx ends.
func lockWorkers(ctx context.Context) (*os.File, error) {
	os.MkdirAll(filepath.Dir(workersLockFile), 0o755)
	f, err := os.OpenFile(workersLockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("launch: lock %s: %w", workersLockFile, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("launch: another cluster with workers runs on this machine (%s): %w", workersLockFile, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// worker is one `synod worker` process.
type worker struct {
	name, netns, ip, dir, logFile string
	args                          []string // nsenter's
	cmd                           *exec.Cmd
	done                          chan struct{}
}

// spawnWorker starts w's process (again).
func (c *Cluster) spawnWorker(w *worker) error {
	logf, err := os.OpenFile(w.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// nsenter, not `ip netns exec`: the latter also makes a private
	// mount namespace, hiding the pod netns mounts from runc.
	cmd := exec.Command("nsenter", w.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("launch: start worker %s: %w", w.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	c.mu.Lock()
	w.cmd, w.done = cmd, done
	c.mu.Unlock()
	return nil
}

// KillWorker sends sig to worker i's process (from 0) only: its containerd
// and containers live on, as they would when a kubelet crashes.
func (c *Cluster) KillWorker(i int, sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.workers) {
		return fmt.Errorf("launch: no worker %d", i)
	}
	w := c.workers[i]
	if isClosed(w.done) {
		return fmt.Errorf("%w: worker %s", ErrNotRunning, w.name)
	}
	return syscall.Kill(w.cmd.Process.Pid, sig)
}

// StartWorker starts worker i again after it exited.
func (c *Cluster) StartWorker(i int) error {
	c.mu.Lock()
	if i < 0 || i >= len(c.workers) {
		c.mu.Unlock()
		return fmt.Errorf("launch: no worker %d", i)
	}
	w := c.workers[i]
	c.mu.Unlock()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%w: worker %s", ErrRunning, w.name)
	}
	return c.spawnWorker(w)
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("launch: %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ensureHostBridge creates the host bridge (idempotent).
func (c *Cluster) ensureHostBridge() error {
	if err := exec.Command("ip", "link", "show", hostBridge).Run(); err == nil {
		return nil
	}
	for _, args := range [][]string{
		{"ip", "link", "add", hostBridge, "type", "bridge"},
		{"ip", "addr", "add", hostBridgeIP + "/24", "dev", hostBridge},
		{"ip", "link", "set", hostBridge, "up"},
	} {
		if err := run(args...); err != nil {
			return err
		}
	}
	return nil
}

// startWorkers makes a network namespace per worker, wired to the host
// bridge, and starts `synod worker` in it.
func (c *Cluster) startWorkers(ctx context.Context) error {
	ms := c.Masters()
	for i := 1; i <= c.opts.Workers; i++ {
		w := &worker{name: fmt.Sprintf("w%d", i), netns: fmt.Sprintf("synodup-w%d", i), ip: fmt.Sprintf("10.99.0.%d", 10+i),
			dir: filepath.Join(c.dir, fmt.Sprintf("w%d", i)), logFile: filepath.Join(c.dir, fmt.Sprintf("w%d.log", i)), done: make(chan struct{})}
		host, peer := fmt.Sprintf("synup%dh", i), fmt.Sprintf("synup%dw", i)
		exec.Command("ip", "netns", "delete", w.netns).Run() // a leftover of a crashed run
		exec.Command("ip", "link", "delete", host).Run()
		for _, args := range [][]string{
			{"ip", "netns", "add", w.netns},
			{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			{"ip", "link", "set", host, "master", hostBridge, "up"},
			{"ip", "link", "set", peer, "netns", w.netns},
			{"ip", "-n", w.netns, "link", "set", "lo", "up"},
			{"ip", "-n", w.netns, "link", "set", peer, "name", "eth0"},
			{"ip", "-n", w.netns, "addr", "add", fmt.Sprintf(workerSubnet, 10+i), "dev", "eth0"},
			{"ip", "-n", w.netns, "link", "set", "eth0", "up"},
			{"ip", "-n", w.netns, "route", "add", "default", "via", hostBridgeIP},
		} {
			if err := run(args...); err != nil {
				return err
			}
		}
		w.args = []string{"--net=/run/netns/" + w.netns, c.opts.Binary, "worker", "--name", w.name, "--data-dir", w.dir,
			"--kubeconfig", c.KubeconfigPath(), "--gossip-addr", w.ip + ":7946", "--node-ip", w.ip}
		for _, m := range ms {
			w.args = append(w.args, "--server", m.APIURL, "--join", m.Gossip)
		}
		if err := c.spawnWorker(w); err != nil {
			return err
		}
		c.mu.Lock()
		c.workers = append(c.workers, w)
		c.mu.Unlock()
		c.importTestImage(ctx, w)
		c.log.Info("worker started", "name", w.name, "pid", w.cmd.Process.Pid, "netns", w.netns, "ip", w.ip, "log", w.logFile)
	}
	return nil
}

// TestImage is the image every worker of `synod up` has without a registry:
// busybox built from Debian's busybox-static (`synod image busybox`).
const TestImage = "docker.io/library/busybox:synod-test"

// importTestImage imports TestImage into the worker's containerd once its
// socket answers (at most 30s); a failure is only logged, since a cluster
// without it still works with images imported by hand.
func (c *Cluster) importTestImage(ctx context.Context, w *worker) {
	tarball := filepath.Join(c.dir, "busybox-image.tar")
	if _, err := os.Stat(tarball); err != nil {
		if out, err := exec.CommandContext(ctx, c.opts.Binary, "image", "busybox", tarball).CombinedOutput(); err != nil {
			c.log.Warn("no test image for the workers", "err", err, "out", strings.TrimSpace(string(out)))
			return
		}
	}
	sock := filepath.Join(w.dir, "cri", "containerd", "containerd.sock")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, c.opts.Binary, "image", "import", "--containerd-socket", sock, tarball).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || isClosed(w.done) {
			c.log.Warn("could not import the test image", "worker", w.name, "err", err, "out", strings.TrimSpace(string(out)))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopWorkers stops every worker (SIGTERM, then SIGKILL), kills what still
// runs in its namespaces (containers outlive a stopped containerd in their
// shims) and removes the namespaces and veths (the bridge goes after the
// masters, in removeWorkerBridge).
func (c *Cluster) stopWorkers() {
	c.mu.Lock()
	ws := c.workers
	c.workers = nil
	c.mu.Unlock()
	if len(ws) == 0 && c.opts.Workers == 0 {
		return
	}
	// Let the kubelets stop and remove their containers (which unmounts
	// their root filesystems) before the workers go.
	c.drainWorkers(ws)
	for _, w := range ws {
		syscall.Kill(w.cmd.Process.Pid, syscall.SIGTERM)
	}
	for _, w := range ws {
		select {
		case <-w.done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
			<-w.done
		}
	}
	// Containers run in pod namespaces (synod-<pod uid>) the workers made;
	// a worker's pods are the directories of its kubelet state. Kill what
	// runs in them and in the worker namespaces, then remove those.
	for i := 1; i <= max(len(ws), c.opts.Workers); i++ {
		dir := filepath.Join(c.dir, fmt.Sprintf("w%d", i), "kubelet", "pods")
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			removeNetns("synod-" + e.Name())
		}
		removeNetns(fmt.Sprintf("synodup-w%d", i))
		unmountUnder(filepath.Join(c.dir, fmt.Sprintf("w%d", i)))
	}
	for i := 1; i <= max(len(ws), c.opts.Workers); i++ {
		exec.Command("ip", "link", "delete", fmt.Sprintf("synup%dh", i)).Run()
	}
}

// removeWorkerBridge deletes the host bridge and releases the machine-wide
// workers lock. It runs after the masters stopped: they listen on the
// bridge's address, and taking it away first would cut their last goodbyes
// (lease release, raft leadership transfer) short.
func (c *Cluster) removeWorkerBridge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.workersLock == nil {
		return
	}
	exec.Command("ip", "link", "delete", hostBridge).Run()
	c.workersLock.Close()
	c.workersLock = nil
}

// drainWorkers deletes the pods bound to the workers and waits (up to 20s)
// until their kubelets have cleaned them up (the pod state dirs are gone).
func (c *Cluster) drainWorkers(ws []*worker) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
	if err != nil {
		return
	}
	cfg.Timeout = 5 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	zero := int64(0)
	for _, w := range ws {
		pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + w.name})
		if err != nil {
			continue
		}
		for _, p := range pods.Items {
			client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}
	}
	for _, w := range ws {
		for ctx.Err() == nil {
			entries, err := os.ReadDir(filepath.Join(w.dir, "kubelet", "pods"))
			if err != nil || len(entries) == 0 {
				break
			}
			select {
			case <-w.done:
			case <-time.After(200 * time.Millisecond):
			}
			if isClosed(w.done) {
				break
			}
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// unmountUnder lazily unmounts what is still mounted below dir (container
// root filesystems of containers that were killed), deepest first.
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

// removeNetns kills every process in network namespace name and deletes it.
func removeNetns(name string) {
	if _, err := os.Stat("/run/netns/" + name); err != nil {
		return
	}
	killNetnsPids(name)
	exec.Command("ip", "netns", "delete", name).Run()
}

func killNetnsPids(name string) {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
