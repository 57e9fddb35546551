package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"synod/internal/launch"
)

// upProcess is a running `synod up` (the binary built by TestMain).
type upProcess struct {
	cmd     *exec.Cmd
	summary string // stdout up to "Press Ctrl-C"
	done    chan error
}

func startUp(t *testing.T, args ...string) *upProcess {
	t.Helper()
	cmd := exec.Command(synodBinary, append([]string{"up"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testLogWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u := &upProcess{cmd: cmd, done: make(chan error, 1)}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-u.done
	})
	var b strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
			break
		}
	}
	u.summary = b.String()
	go func() {
		for sc.Scan() {
		}
		u.done <- cmd.Wait()
	}()
	if !strings.Contains(u.summary, "Press Ctrl-C") {
		t.Fatalf("synod up %q did not start:\n%s", args, u.summary)
	}
	return u
}

// stop signals synod up and checks it exits 0 within a bound.
func (u *upProcess) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	u.cmd.Process.Signal(sig)
	select {
	case err := <-u.done:
		if err != nil {
			t.Fatalf("synod up after %s: %v, want exit 0", sig, err)
		}
		u.done <- nil // for the cleanup
	case <-time.After(45 * time.Second):
		t.Fatalf("synod up did not exit within 45s of %s", sig)
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func readCluster(t *testing.T, dir string) []launch.Master {
	t.Helper()
	ms, _, err := launch.ReadState(filepath.Join(dir, launch.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// poll calls cond every period until it is true or timeout passes.
func poll(t *testing.T, what string, cond func() bool, period, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func TestUpStartsStopsAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	u := startUp(t, "--masters", "3", "--dir", dir)

	ms := readCluster(t, dir)
	if len(ms) != 3 {
		t.Fatalf("cluster.json has %d masters", len(ms))
	}
	for _, m := range ms {
		if m.PID == 0 || !pidAlive(m.PID) || !strings.Contains(u.summary, m.ClientURL) {
			t.Fatalf("master %+v not running or not in the summary:\n%s", m, u.summary)
		}
	}
	poll(t, "synod status to answer", func() bool {
		code, _, _ := runCLI(t, "status", "--cluster-file", dir)
		return code == 0
	}, 200*time.Millisecond, 60*time.Second)

	// The printed etcdctl line works as printed.
	var line string
	for _, l := range strings.Split(u.summary, "\n") {
		if strings.Contains(l, "etcdctl --endpoints=") {
			line = strings.TrimSpace(l)
		}
	}
	if !strings.HasPrefix(line, "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:") {
		t.Fatalf("no etcdctl line in:\n%s", u.summary)
	}
	if _, err := exec.LookPath("etcdctl"); err == nil {
		poll(t, "etcdctl endpoint status", func() bool {
			out, err := exec.Command("sh", "-c", line).CombinedOutput()
			return err == nil && strings.Count(string(out), " true |") == 1
		}, 200*time.Millisecond, 30*time.Second)
	}

	// A master that dies stays dead without --restart; cluster.json says so.
	syscall.Kill(ms[1].PID, syscall.SIGKILL)
	poll(t, "cluster.json to show m2 down", func() bool { return readCluster(t, dir)[1].PID == 0 }, 50*time.Millisecond, 10*time.Second)

	u.stop(t, syscall.SIGTERM)
	for _, m := range ms {
		if pidAlive(m.PID) {
			t.Fatalf("master %s (pid %d) alive after synod up exited", m.Name, m.PID)
		}
	}

	// Again on the same dir: same names and ports, so the data dirs match.
	u = startUp(t, "--dir", dir, "--restart")
	again := readCluster(t, dir)
	for i := range ms {
		if again[i].Name != ms[i].Name || again[i].ClientURL != ms[i].ClientURL || again[i].PeerURL != ms[i].PeerURL {
			t.Fatalf("restarted cluster master %d = %+v, was %+v", i, again[i], ms[i])
		}
	}
	var out, errOut strings.Builder
	second := exec.Command(synodBinary, "up", "--dir", dir)
	second.Stdout, second.Stderr = &out, &errOut
	if err := second.Run(); err == nil || !strings.Contains(errOut.String(), "in use") {
		t.Fatalf("second synod up on a live dir: %v, %q", err, errOut.String())
	}

	// With --restart a killed master comes back under a new pid.
	old := again[0].PID
	syscall.Kill(old, syscall.SIGKILL)
	poll(t, "m1 restarted", func() bool {
		pid := readCluster(t, dir)[0].PID
		return pid != 0 && pid != old
	}, 50*time.Millisecond, 15*time.Second)
	poll(t, "synod status after restart", func() bool {
		code, _, _ := runCLI(t, "status", "--cluster-file", dir)
		return code == 0
	}, 200*time.Millisecond, 60*time.Second)
	u.stop(t, syscall.SIGINT)
}
