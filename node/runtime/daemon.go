package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
)

// daemon is a containerd process this package started (or adopted) and
// must stop on Close.
type daemon struct {
	pid    int
	cmd    *exec.Cmd // nil when adopted from a previous process
	exited chan struct{}
	log    *slog.Logger
}

// daemonConfig disables the CRI plugin (this package is the kubelet's
// runtime layer; the CRI plugin would only load CNI configs and open a
// streaming port) and keeps every path under the private root.
const daemonConfig = `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`

// startDaemon runs containerd under dir and waits until its socket answers.
// If a daemon from an earlier run (pid file) still answers on the socket,
// it is adopted instead.
func startDaemon(ctx context.Context, dir string, log *slog.Logger) (*daemon, string, error) {
	root := filepath.Join(dir, "root")
	state := filepath.Join(dir, "state")
	sock := filepath.Join(dir, "containerd.sock")
	pidFile := filepath.Join(dir, "containerd.pid")
	if len(sock) > 100 {
		return nil, "", fmt.Errorf("containerd socket path %q is too long for a unix socket; use a shorter StateDir", sock)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, "", fmt.Errorf("create containerd dir: %w", err)
	}

	if pid, ok := runningDaemon(pidFile); ok {
		if err := ping(ctx, sock, 2*time.Second); err == nil {
			log.Info("adopting containerd left running by an earlier process", "pid", pid, "socket", sock)
			return &daemon{pid: pid, exited: make(chan struct{}), log: log}, sock, nil
		}
		return nil, "", fmt.Errorf("containerd pid %d from %s is running but does not answer on %s; stop it first", pid, pidFile, sock)
	}

	binary, err := exec.LookPath("containerd")
	if err != nil {
		return nil, "", fmt.Errorf("containerd binary not found (install Debian's containerd and runc packages): %w", err)
	}
	cfg := filepath.Join(dir, "config.toml")
	conf := fmt.Sprintf(daemonConfig, root, state, sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, "", fmt.Errorf("write containerd config: %w", err)
	}
	_ = os.Remove(sock) // a stale socket from a dead daemon
	logFile, err := os.OpenFile(filepath.Join(dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("open containerd log: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(binary, "--config", cfg, "--root", root, "--state", state, "--address", sock)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group: a Ctrl-C meant for the kubelet must not kill
	// the daemon (and with it the containers' shims' parent) behind
	// Close's back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start containerd: %w", err)
	}
	d := &daemon{pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{}), log: log}
	go func() {
		_ = cmd.Wait()
		close(d.exited)
	}()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(d.pid)), 0o600); err != nil {
		d.stop()
		return nil, "", fmt.Errorf("write containerd pid file: %w", err)
	}
	log.Info("started containerd", "pid", d.pid, "socket", sock, "log", logFile.Name())

	// Bounded wait for the socket; a daemon that dies early is reported
	// with the end of its log.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.exited:
			return nil, "", fmt.Errorf("containerd exited during startup: %s", tail(logFile.Name(), 2000))
		case <-ctx.Done():
			d.stop()
			return nil, "", fmt.Errorf("waiting for containerd: %w", ctx.Err())
		default:
		}
		if err := ping(ctx, sock, time.Second); err == nil {
			return d, sock, nil
		} else if time.Now().After(deadline) {
			d.stop()
			return nil, "", fmt.Errorf("containerd did not answer on %s within 30s: %w", sock, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ping checks that a containerd answers on sock.
func ping(ctx context.Context, sock string, timeout time.Duration) error {
	if _, err := os.Stat(sock); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := containerd.New(sock, containerd.WithTimeout(timeout))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Version(ctx)
	return err
}

// runningDaemon reads the pid file and reports whether that pid is still
// a containerd process (pids get reused).
func runningDaemon(pidFile string) (int, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	if filepath.Base(argv0) != "containerd" {
		return 0, false
	}
	return pid, true
}

// stop sends SIGTERM, and SIGKILL if containerd has not exited within 10 s.
// Running containers are not touched: their shims outlive the daemon.
func (d *daemon) stop() {
	if d.cmd == nil {
		d.stopAdopted()
		return
	}
	_ = syscall.Kill(d.pid, syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.log.Warn("containerd ignored SIGTERM for 10s; killing it", "pid", d.pid)
		_ = syscall.Kill(d.pid, syscall.SIGKILL)
		<-d.exited
	}
}

// stopAdopted stops a daemon that is not our child, polling for its exit.
func (d *daemon) stopAdopted() {
	_ = syscall.Kill(d.pid, syscall.SIGTERM)
	for i := 0; i < 200; i++ { // 10 s
		if !alive(d.pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(d.pid, syscall.SIGKILL)
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// tail returns up to the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	b := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(b, off)
	return strings.TrimSpace(string(b))
}
