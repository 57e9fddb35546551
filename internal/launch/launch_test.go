package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const etcdBinary = "/usr/bin/etcd"

// TestMain doubles as a helper process for TestNoOrphansWhenParentDies.
func TestMain(m *testing.M) {
	if dir := os.Getenv("LAUNCH_TEST_PARENT_DIR"); dir != "" {
		helperParent(dir)
		return
	}
	os.Exit(m.Run())
}

// helperParent starts a one-master cluster of `sleep` and blocks until killed.
func helperParent(dir string) {
	_, err := Start(context.Background(), Options{
		Masters:      1,
		Dir:          dir,
		Command:      func(Master) *exec.Cmd { return exec.Command("sleep", "600") },
		StartTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("started")
	select {}
}

func needEtcd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(etcdBinary); err != nil {
		t.Skipf("%s not installed (make deps)", etcdBinary)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// startEtcd starts an n-member etcd cluster through the launcher.
func startEtcd(t *testing.T, o Options) *Cluster {
	t.Helper()
	needEtcd(t)
	o.Command = EtcdCommand(etcdBinary)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o.Logger = testLogger(t)
	o.StopTimeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

func waitReady(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
}

// testPoll calls cond every period until it returns true or timeout passes.
func testPoll(t *testing.T, what string, cond func() bool, period, timeout time.Duration) {
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

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3 is the state; a zombie has exited.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func putGet(t *testing.T, endpoints []string, key string, put bool) string {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if put {
		// A put proposed just as the leader dies can be lost with it (etcd
		// then times out); the put is idempotent here, so retry.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := cli.Put(ctx, key, "v-"+key)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("put: %v", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestClusterLifecycle(t *testing.T) {
	c := startEtcd(t, Options{Masters: 3})
	waitReady(t, c)

	ms := c.Masters()
	if len(ms) != 3 || len(c.Endpoints()) != 3 {
		t.Fatalf("want 3 masters, got %+v", ms)
	}
	b, err := os.ReadFile(c.StateFile())
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Endpoints != strings.Join(c.Endpoints(), ",") {
		t.Fatalf("cluster.json endpoints %q, want %q", st.Endpoints, strings.Join(c.Endpoints(), ","))
	}
	for i, m := range st.Masters {
		if m.PID == 0 || m.PID != ms[i].PID || m.Name != fmt.Sprintf("m%d", i+1) || m.LogFile == "" || m.DataDir == "" {
			t.Fatalf("cluster.json master %d = %+v", i, m)
		}
	}
	if got := putGet(t, c.Endpoints(), "a", true); got != "v-a" {
		t.Fatalf("get a = %q", got)
	}

	// Crash m1, the cluster keeps serving, then bring m1 back.
	oldPID := ms[0].PID
	if err := c.Kill(0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testPoll(t, "m1 reaped", func() bool { return !c.Masters()[0].Running }, 20*time.Millisecond, 5*time.Second)
	if err := c.Kill(0, syscall.SIGTERM); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Kill on a dead master: %v, want ErrNotRunning", err)
	}
	if m := c.Masters()[0]; m.PID != 0 || !strings.Contains(m.LastExit, "killed") {
		t.Fatalf("after SIGKILL: %+v", m)
	}
	if got := putGet(t, c.Endpoints()[1:], "b", true); got != "v-b" {
		t.Fatalf("get b = %q", got)
	}
	if err := c.StartMaster(0); err != nil {
		t.Fatal(err)
	}
	if err := c.StartMaster(0); !errors.Is(err, ErrRunning) {
		t.Fatalf("StartMaster on a running master: %v, want ErrRunning", err)
	}
	m0 := c.Masters()[0]
	if !m0.Running || m0.PID == oldPID || m0.Restarts != 1 {
		t.Fatalf("after StartMaster: %+v", m0)
	}
	waitReady(t, c)
	if got := putGet(t, c.Endpoints()[:1], "b", false); got != "v-b" {
		t.Fatalf("restarted m1 reads b = %q", got)
	}

	// A frozen master must not stall Stop.
	if err := c.Kill(1, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pids := []int{}
	for _, m := range c.Masters() {
		pids = append(pids, m.PID)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Fatalf("pid %d alive after Stop", pid)
		}
	}
	if err := c.StartMaster(0); !errors.Is(err, ErrStopped) {
		t.Fatalf("StartMaster after Stop: %v, want ErrStopped", err)
	}
}

func TestRestartOption(t *testing.T) {
	c := startEtcd(t, Options{Masters: 1, Restart: true})
	waitReady(t, c)
	putGet(t, c.Endpoints(), "k", true)
	old := c.Masters()[0].PID
	if err := c.Kill(0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testPoll(t, "m1 restarted", func() bool {
		m := c.Masters()[0]
		return m.Running && m.PID != old && m.Restarts == 1
	}, 20*time.Millisecond, 10*time.Second)
	waitReady(t, c)
	if got := putGet(t, c.Endpoints(), "k", false); got != "v-k" {
		t.Fatalf("after restart k = %q", got)
	}
}

func TestReuseExistingDir(t *testing.T) {
	dir := t.TempDir()
	c := startEtcd(t, Options{Masters: 1, Dir: dir})
	waitReady(t, c)
	putGet(t, c.Endpoints(), "kept", true)
	first := c.Masters()[0]
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	if _, err := Start(context.Background(), Options{Masters: 3, Dir: dir, Command: EtcdCommand(etcdBinary)}); err == nil || !strings.Contains(err.Error(), "describes 1 masters") {
		t.Fatalf("Start with another count: %v", err)
	}

	c = startEtcd(t, Options{Masters: 1, Dir: dir})
	again := c.Masters()[0]
	if again.Name != first.Name || again.ClientURL != first.ClientURL || again.PeerURL != first.PeerURL || again.DataDir != first.DataDir {
		t.Fatalf("reused master %+v, first was %+v", again, first)
	}
	waitReady(t, c)
	if got := putGet(t, c.Endpoints(), "kept", false); got != "v-kept" {
		t.Fatalf("kept = %q after reuse", got)
	}
}

func TestDirLocked(t *testing.T) {
	dir := t.TempDir()
	startEtcd(t, Options{Masters: 1, Dir: dir})
	_, err := Start(context.Background(), Options{Masters: 1, Dir: dir, Command: EtcdCommand(etcdBinary)})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Start on a live dir: %v", err)
	}
}

func TestPortRaceRetried(t *testing.T) {
	// Hold a port and hand it out once, as if another process took it
	// between pickPorts and the master's bind.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	orig := pickPorts
	t.Cleanup(func() { pickPorts = orig })
	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		ports, err := orig(n)
		if calls == 1 && err == nil {
			ports[1] = busy // m1's peer port
		}
		return ports, err
	}

	c := startEtcd(t, Options{Masters: 1})
	if calls != 2 {
		t.Fatalf("pickPorts called %d times, want 2", calls)
	}
	if m := c.Masters()[0]; strings.HasSuffix(m.PeerURL, fmt.Sprint(":", busy)) || !m.Running {
		t.Fatalf("master after retry: %+v", m)
	}
	waitReady(t, c)
}

func TestStartReportsEarlyDeath(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(context.Background(), Options{
		Masters: 1,
		Dir:     dir,
		Command: func(Master) *exec.Cmd { return exec.Command("sh", "-c", "echo boom: bad config >&2; exit 3") },
	})
	if err == nil || !strings.Contains(err.Error(), "boom: bad config") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("Start = %v, want the master's last log line and exit status", err)
	}
	// The lock was released: the dir can be used again.
	lock, err := lockDir(dir)
	if err != nil {
		t.Fatalf("dir still locked after failed Start: %v", err)
	}
	lock.Close()
}

func TestFreshStartRefusesStrayData(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "m1", "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Options{Masters: 1, Dir: dir, Command: EtcdCommand(etcdBinary)})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Start over stray data: %v", err)
	}
}

func TestNoOrphansWhenParentDies(t *testing.T) {
	dir := t.TempDir()
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), "LAUNCH_TEST_PARENT_DIR="+dir)
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	parent.Stderr = testWriter{t}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Process.Kill()
	buf := make([]byte, 64)
	n, _ := out.Read(buf) // blocks until "started" or the helper exits
	if !strings.Contains(string(buf[:n]), "started") {
		parent.Wait()
		t.Fatalf("helper parent did not start: %q", buf[:n])
	}
	masters, _, err := ReadState(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	child := masters[0].PID
	if !alive(child) {
		t.Fatalf("child %d not running", child)
	}
	parent.Process.Kill()
	parent.Wait()
	testPoll(t, "orphan to die", func() bool { return !alive(child) }, 20*time.Millisecond, 5*time.Second)
}
