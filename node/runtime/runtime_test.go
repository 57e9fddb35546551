package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"synod/internal/testimage"
)

// The package's tests share one private containerd (started on first use,
// stopped by pid in TestMain) and the busybox test image.
var shared struct {
	once    sync.Once
	err     error
	dir     string
	rt      *Runtime
	ref     string // docker-save image
	ociRef  string // OCI-layout image
	logsDir string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.rt != nil {
		// Every test removes its containers; anything left is a leak.
		left, err := shared.rt.ListContainers(context.Background(), nil)
		if err != nil || len(left) > 0 {
			fmt.Fprintf(os.Stderr, "containers left behind: %v (err %v)\n", left, err)
			for _, s := range left {
				_ = shared.rt.RemoveContainer(context.Background(), s.ID)
			}
			code = 1
		}
		sock := shared.rt.Socket()
		if err := shared.rt.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		// Deleted tasks' shims exit on their own; none may linger.
		deadline := time.Now().Add(10 * time.Second)
		for shims := shimsOf(sock); len(shims) > 0; shims = shimsOf(sock) {
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "shims of the test daemon still running: %v\n", shims)
				code = 1
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if shared.dir != "" {
		if err := os.RemoveAll(shared.dir); err != nil {
			fmt.Fprintln(os.Stderr, "remove test dir:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// need skips the test (or fails it in CI) if this machine cannot run
// containers: root, containerd, the runc shim and runc are required.
func need(t *testing.T) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		missing("running containers needs root")
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing("%s not found: install Debian's containerd and runc packages", bin)
		}
	}
}

// env returns the shared runtime, starting the daemon and importing the
// test images on first use.
func env(t *testing.T) *Runtime {
	t.Helper()
	need(t)
	dockerTar, ref := testimage.Busybox(t, t.TempDir())
	ociTar, ociRef := testimage.BusyboxOCI(t, t.TempDir())
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "synod-rt-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		shared.logsDir = filepath.Join(dir, "logs")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		rt, err := Start(ctx, Config{StateDir: filepath.Join(dir, "state"), Logger: testLogger()})
		if err != nil {
			shared.err = err
			return
		}
		shared.rt = rt
		for _, tarPath := range []string{dockerTar, ociTar} {
			f, err := os.Open(tarPath)
			if err != nil {
				shared.err = err
				return
			}
			_, err = rt.ImportImage(ctx, f)
			f.Close()
			if err != nil {
				shared.err = err
				return
			}
		}
		shared.ref, shared.ociRef = ref, ociRef
	})
	if shared.err != nil {
		t.Fatalf("test runtime: %v", shared.err)
	}
	return shared.rt
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// run creates and starts a container from spec (filling in ID, image and
// log path) and removes it when the test ends.
func run(t *testing.T, rt *Runtime, spec ContainerSpec) ContainerSpec {
	t.Helper()
	spec = create(t, rt, spec)
	if err := rt.StartContainer(ctxFor(t, 30*time.Second), spec.ID); err != nil {
		t.Fatal(err)
	}
	return spec
}

func create(t *testing.T, rt *Runtime, spec ContainerSpec) ContainerSpec {
	t.Helper()
	if spec.ID == "" {
		spec.ID = NewContainerID()
	}
	if spec.Image == "" {
		spec.Image = shared.ref
	}
	if spec.PodUID == "" {
		spec.PodUID = "pod-" + spec.ID[:8]
	}
	if spec.Name == "" {
		spec.Name = "c"
	}
	if spec.LogPath == "" {
		spec.LogPath = filepath.Join(t.TempDir(), spec.Name, "0.log")
	}
	if err := rt.CreateContainer(ctxFor(t, 30*time.Second), spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The shared runtime: rt may be closed by then.
		if err := shared.rt.RemoveContainer(context.Background(), spec.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return spec
}

type logLine struct {
	ts      time.Time
	stream  string
	tag     string
	content string
}

// readLog parses a CRI-format log file, failing on any malformed line.
func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) != 4 {
			t.Fatalf("malformed CRI log line %q", sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil || len(parts[0]) != len("2016-10-06T00:17:09.669794202Z") {
			t.Fatalf("bad timestamp in %q: %v", sc.Text(), err)
		}
		if parts[1] != "stdout" && parts[1] != "stderr" || parts[2] != "F" && parts[2] != "P" {
			t.Fatalf("bad stream or tag in %q", sc.Text())
		}
		out = append(out, logLine{ts, parts[1], parts[2], parts[3]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func hasLine(lines []logLine, stream, content string) bool {
	for _, l := range lines {
		if l.stream == stream && l.content == content && l.tag == "F" {
			return true
		}
	}
	return false
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestImportBothFormats(t *testing.T) {
	rt := env(t)
	ctx := ctxFor(t, 30*time.Second)
	// Re-importing is idempotent and reports the archive's names.
	for _, tc := range []struct {
		build func(testing.TB, string) (string, string)
	}{{testimage.Busybox}, {testimage.BusyboxOCI}} {
		path, ref := tc.build(t, t.TempDir())
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		names, err := rt.ImportImage(ctx, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 1 || names[0] != ref {
			t.Fatalf("imported %v, want [%s]", names, ref)
		}
		img, err := rt.EnsureImage(ctx, ref, PullNever)
		if err != nil {
			t.Fatalf("EnsureImage(%s, Never): %v", ref, err)
		}
		if img.Name != ref || !strings.HasPrefix(img.ID, "sha256:") || img.Size <= 0 {
			t.Fatalf("image = %+v", img)
		}
	}
	// Short names normalize the way Kubernetes' do.
	if _, err := rt.EnsureImage(ctx, "busybox:synod-test", PullIfNotPresent); err != nil {
		t.Fatalf("short name: %v", err)
	}
	if _, err := rt.EnsureImage(ctx, "busybox:not-there", PullNever); !errors.Is(err, ErrImageNeverPull) {
		t.Fatalf("missing image with Never: err = %v, want ErrImageNeverPull", err)
	}
	if _, err := rt.EnsureImage(ctx, "Bad Name!", PullIfNotPresent); !errors.Is(err, ErrInvalidImageName) {
		t.Fatalf("bad name: err = %v, want ErrInvalidImageName", err)
	}
	imgs, err := rt.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) < 2 {
		t.Fatalf("ListImages = %+v, want both test images", imgs)
	}
	// A garbage archive is an error, not a crash.
	if _, err := rt.ImportImage(ctx, strings.NewReader("not a tar")); err == nil {
		t.Fatal("importing garbage succeeded")
	}
}

func TestExitCodeAndCRILog(t *testing.T) {
	rt := env(t)
	for _, ref := range []string{shared.ref, shared.ociRef} {
		t.Run(ref[strings.LastIndex(ref, ":")+1:], func(t *testing.T) {
			spec := run(t, rt, ContainerSpec{Image: ref, Command: []string{"sh", "-c", "echo hello; echo err >&2; printf 'no newline'; exit 3"}})
			st, err := rt.WaitContainer(ctxFor(t, 30*time.Second), spec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.Phase != Exited || st.ExitCode != 3 {
				t.Fatalf("state = %+v, want Exited with code 3", st)
			}
			if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) || st.PID != 0 {
				t.Fatalf("times/pid = %v %v %d", st.StartedAt, st.FinishedAt, st.PID)
			}
			if st.Labels[LabelPodUID] != spec.PodUID || st.Labels[LabelContainerName] != spec.Name || !strings.HasPrefix(st.ImageID, "sha256:") {
				t.Fatalf("identity = %+v", st)
			}
			// What `kubectl logs` would show, per stream.
			for stream, want := range map[string]string{"stdout": "hello\nno newline\n", "stderr": "err\n"} {
				var b strings.Builder
				if err := ReadLog(context.Background(), spec.LogPath, LogOptions{Tail: -1, Stream: stream}, &b); err != nil || b.String() != want {
					t.Errorf("ReadLog %s = %q, %v; want %q", stream, b.String(), err, want)
				}
			}
			lines := readLog(t, spec.LogPath)
			for _, want := range []struct{ stream, content string }{{"stdout", "hello"}, {"stderr", "err"}, {"stdout", "no newline"}} {
				if !hasLine(lines, want.stream, want.content) {
					t.Errorf("log lacks %s %q: %+v", want.stream, want.content, lines)
				}
			}
		})
	}
}

func TestLongLineIsSplitIntoPartials(t *testing.T) {
	rt := env(t)
	// 40,000 characters: two 16 KiB partial records and a final one.
	spec := run(t, rt, ContainerSpec{Command: []string{"sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo"}})
	if _, err := rt.WaitContainer(ctxFor(t, 30*time.Second), spec.ID); err != nil {
		t.Fatal(err)
	}
	lines := readLog(t, spec.LogPath)
	var whole strings.Builder
	var tags []string
	for _, l := range lines {
		whole.WriteString(l.content)
		tags = append(tags, l.tag)
	}
	if whole.String() != strings.Repeat("x", 40000) {
		t.Fatalf("reassembled %d characters, want 40000", whole.Len())
	}
	if strings.Join(tags, "") != "PPF" {
		t.Fatalf("tags = %v, want P P F", tags)
	}
}

func TestStopHonorsSIGTERMThenKills(t *testing.T) {
	rt := env(t)
	// PID 1 gets SIGTERM only through a handler; `wait` is interruptible.
	polite := run(t, rt, ContainerSpec{Name: "polite", Command: []string{"sh", "-c", "trap 'echo got TERM; exit 42' TERM; echo ready; sleep 1000 & wait"}})
	stubborn := run(t, rt, ContainerSpec{Name: "stubborn", Command: []string{"sh", "-c", "trap '' TERM; echo ready; sleep 1000 & wait; sleep 1000"}})
	for _, s := range []ContainerSpec{polite, stubborn} {
		eventually(t, 10*time.Second, s.Name+" ready", func() bool {
			b, _ := os.ReadFile(s.LogPath)
			return strings.Contains(string(b), "ready")
		})
	}
	var wg sync.WaitGroup
	took := map[string]time.Duration{}
	var mu sync.Mutex
	for _, s := range []ContainerSpec{polite, stubborn} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if err := rt.StopContainer(ctxFor(t, 30*time.Second), s.ID, 2*time.Second); err != nil {
				t.Error(err)
			}
			mu.Lock()
			took[s.Name] = time.Since(start)
			mu.Unlock()
		}()
	}
	wg.Wait()
	st, err := rt.WaitContainer(ctxFor(t, 10*time.Second), polite.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode != 42 || took["polite"] > 1500*time.Millisecond {
		t.Fatalf("polite container: exit %d after %s, want 42 well within the grace period", st.ExitCode, took["polite"])
	}
	if !hasLine(readLog(t, polite.LogPath), "stdout", "got TERM") {
		t.Fatal("the TERM handler's output is not in the log")
	}
	st, err = rt.ContainerStatus(ctxFor(t, 10*time.Second), stubborn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != Exited || st.ExitCode != 137 || took["stubborn"] < 2*time.Second || took["stubborn"] > 5*time.Second {
		t.Fatalf("stubborn container: %s exit %d after %s, want SIGKILL (137) after the 2s grace", st.Phase, st.ExitCode, took["stubborn"])
	}
	// Stopping an exited container is a no-op.
	if err := rt.StopContainer(ctxFor(t, 5*time.Second), stubborn.ID, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestSpecLimitsEnvArgsMounts(t *testing.T) {
	rt := env(t)
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()
	script := `cat /sys/fs/cgroup/memory/memory.limit_in_bytes
cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us
cat /sys/fs/cgroup/cpu/cpu.shares
echo "env=$FOO path=$PATH"
echo "args=$0,$1"
echo "pwd=$(pwd)"
echo "hostname=$(hostname)"
echo "data=$(cat /data/hello.txt)"
echo written > /out/file
(echo x > /data/nope) 2>/dev/null && echo ro=no || echo ro=yes`
	spec := run(t, rt, ContainerSpec{
		Command:          []string{"sh", "-c"},
		Args:             []string{script, "first", "second"},
		Env:              []string{"FOO=bar baz"},
		WorkingDir:       "/tmp",
		Hostname:         "mypod",
		MemoryLimitBytes: 64 << 20,
		CPULimitMilli:    500,
		CPURequestMilli:  250,
		Mounts: []Mount{
			{HostPath: data, ContainerPath: "/data", ReadOnly: true},
			{HostPath: rw, ContainerPath: "/out"},
		},
	})
	st, err := rt.WaitContainer(ctxFor(t, 30*time.Second), spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range readLog(t, spec.LogPath) {
		out = append(out, l.content)
	}
	want := []string{
		"67108864", "50000", "256",
		"env=bar baz path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"args=first,second", "pwd=/tmp", "hostname=mypod", "data=from the host", "ro=yes",
	}
	if st.ExitCode != 0 || strings.Join(out, "\n") != strings.Join(want, "\n") {
		t.Fatalf("exit %d, output:\n%s\nwant:\n%s", st.ExitCode, strings.Join(out, "\n"), strings.Join(want, "\n"))
	}
	if b, err := os.ReadFile(filepath.Join(rw, "file")); err != nil || string(b) != "written\n" {
		t.Fatalf("read-write mount: %q %v", b, err)
	}
}

func TestImageDefaultCommandAndArgsOnly(t *testing.T) {
	rt := env(t)
	// The image's cmd is ["sh"]: args alone replace it (no entrypoint).
	spec := run(t, rt, ContainerSpec{Args: []string{"echo", "from", "args"}})
	if _, err := rt.WaitContainer(ctxFor(t, 30*time.Second), spec.ID); err != nil {
		t.Fatal(err)
	}
	if !hasLine(readLog(t, spec.LogPath), "stdout", "from args") {
		t.Fatal("args did not replace the image cmd")
	}
}

func TestExec(t *testing.T) {
	rt := env(t)
	spec := run(t, rt, ContainerSpec{Command: []string{"sleep", "1000"}, Env: []string{"WHO=container"}})
	ctx := ctxFor(t, 30*time.Second)

	var stdout, stderr strings.Builder
	code, err := rt.Exec(ctx, spec.ID, []string{"sh", "-c", "echo out $WHO; echo err >&2; exit 7"}, nil, &stdout, &stderr, false)
	if err != nil || code != 7 || stdout.String() != "out container\n" || stderr.String() != "err\n" {
		t.Fatalf("exec: code %d err %v stdout %q stderr %q", code, err, stdout.String(), stderr.String())
	}

	stdout.Reset()
	code, err = rt.Exec(ctx, spec.ID, []string{"cat"}, strings.NewReader("via stdin\n"), &stdout, nil, false)
	if err != nil || code != 0 || stdout.String() != "via stdin\n" {
		t.Fatalf("exec with stdin: code %d err %v stdout %q", code, err, stdout.String())
	}

	stdout.Reset()
	code, err = rt.Exec(ctx, spec.ID, []string{"sh", "-c", "test -t 1 && echo tty"}, nil, &stdout, nil, true)
	if err != nil || code != 0 || !strings.Contains(stdout.String(), "tty") {
		t.Fatalf("exec with tty: code %d err %v stdout %q", code, err, stdout.String())
	}

	// An exec probe's timeout kills the process.
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := rt.Exec(tctx, spec.ID, []string{"sleep", "100"}, nil, nil, nil, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("exec past its deadline: err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timed-out exec took %s", d)
	}
	if _, err := rt.Exec(ctx, spec.ID, []string{"/no/such/binary"}, nil, nil, nil, false); err == nil {
		t.Fatal("exec of a missing binary succeeded")
	}
	// The container itself is unaffected.
	st, err := rt.ContainerStatus(ctx, spec.ID)
	if err != nil || st.Phase != Running || st.PID == 0 {
		t.Fatalf("after execs: %+v %v", st, err)
	}
}

func TestStartFailureLeavesRemovableContainer(t *testing.T) {
	rt := env(t)
	spec := create(t, rt, ContainerSpec{Command: []string{"/no/such/binary"}})
	err := rt.StartContainer(ctxFor(t, 30*time.Second), spec.ID)
	if !errors.Is(err, ErrStartFailed) {
		t.Fatalf("start of a missing binary: err = %v, want ErrStartFailed", err)
	}
	st, err := rt.ContainerStatus(ctxFor(t, 10*time.Second), spec.ID)
	if err != nil || st.Phase != Created {
		t.Fatalf("after failed start: %+v %v", st, err)
	}
}

func TestNetworkNamespaceByPath(t *testing.T) {
	rt := env(t)
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ip not found: install iproute2")
		}
		t.Skip("ip not found")
	}
	name := fmt.Sprintf("synod-rt-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete: %v: %s", err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "add", "marker0", "type", "veth", "peer", "name", "marker1").CombinedOutput(); err != nil {
		t.Fatalf("add dummy link: %v: %s", err, out)
	}
	// Two containers of one pod share the namespace (no pause container).
	var specs []ContainerSpec
	for _, n := range []string{"a", "b"} {
		specs = append(specs, run(t, rt, ContainerSpec{Name: n, NetNSPath: "/run/netns/" + name, Command: []string{"cat", "/proc/net/dev"}}))
	}
	for _, s := range specs {
		if _, err := rt.WaitContainer(ctxFor(t, 30*time.Second), s.ID); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(s.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "marker0") {
			t.Fatalf("container %s is not in the pod's netns:\n%s", s.Name, b)
		}
	}
	if err := rt.CreateContainer(ctxFor(t, 10*time.Second), ContainerSpec{ID: NewContainerID(), Image: shared.ref, Command: []string{"true"}, NetNSPath: "/run/netns/does-not-exist"}); err == nil {
		t.Fatal("a missing netns path was accepted")
	}
}

func TestOOMKilled(t *testing.T) {
	rt := env(t)
	// A shell variable of 64 MB in a 16 MiB container.
	spec := run(t, rt, ContainerSpec{MemoryLimitBytes: 16 << 20, Command: []string{"sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived"}})
	if _, err := rt.WaitContainer(ctxFor(t, 30*time.Second), spec.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "OOMKilled", func() bool {
		st, err := rt.ContainerStatus(context.Background(), spec.ID)
		return err == nil && st.OOMKilled && st.ExitCode != 0
	})
}

func TestReadoptAfterRestart(t *testing.T) {
	rt := env(t)
	ctx := ctxFor(t, 60*time.Second)
	// A "kubelet" with its own state dir on the shared daemon.
	stateDir := t.TempDir()
	first, err := Start(ctx, Config{Socket: rt.Socket(), StateDir: stateDir, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	podUID := "pod-readopt-" + NewContainerID()[:8]
	spec := create(t, first, ContainerSpec{PodUID: podUID, Command: []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"}})
	if err := first.StartContainer(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	before, err := first.ContainerStatus(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "first ticks", func() bool { return len(readLog(t, spec.LogPath)) >= 3 })
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	// The kubelet is down for a while; the container keeps running.
	time.Sleep(300 * time.Millisecond)
	second, err := Start(ctx, Config{Socket: rt.Socket(), StateDir: stateDir, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	found, err := second.ListContainers(ctx, map[string]string{LabelPodUID: podUID})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].ID != spec.ID || found[0].Phase != Running || found[0].PID != before.PID || !found[0].StartedAt.Equal(before.StartedAt) {
		t.Fatalf("after restart found %+v, want the running container %s (pid %d, started %v)", found, spec.ID, before.PID, before.StartedAt)
	}
	if other, err := second.ListContainers(ctx, map[string]string{LabelPodUID: "no-such-pod"}); err != nil || len(other) != 0 {
		t.Fatalf("selector for another pod found %+v %v", other, err)
	}
	// Its output keeps reaching the log, with no tick lost or repeated
	// across the restart.
	n := len(readLog(t, spec.LogPath))
	eventually(t, 10*time.Second, "ticks after re-attach", func() bool { return len(readLog(t, spec.LogPath)) >= n+5 })
	if err := second.StopContainer(ctx, spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := second.WaitContainer(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	for i, l := range readLog(t, spec.LogPath) {
		if l.content != fmt.Sprintf("tick %d", i) {
			t.Fatalf("log line %d = %q, want %q", i, l.content, fmt.Sprintf("tick %d", i))
		}
	}
	if err := second.RemoveContainer(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(second.fifoDir(spec.ID)); !os.IsNotExist(err) {
		t.Fatalf("fifo dir left behind: %v", err)
	}
}

func TestPullFailsFast(t *testing.T) {
	rt := env(t)
	ctx := ctxFor(t, 30*time.Second)
	// A registry that accepts connections and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	quick, err := Start(ctx, Config{Socket: rt.Socket(), StateDir: t.TempDir(), PullTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer quick.Close()
	for _, ref := range []string{
		"127.0.0.1:1/nothing/here:1",    // connection refused
		"registry.invalid/busybox:1",    // no such host
		hang.Addr().String() + "/x/y:1", // no answer: the pull timeout
	} {
		start := time.Now()
		_, err := quick.EnsureImage(ctx, ref, PullIfNotPresent)
		took := time.Since(start)
		if !errors.Is(err, ErrImagePull) {
			t.Fatalf("pull %s: err = %v, want ErrImagePull", ref, err)
		}
		if took > 5*time.Second {
			t.Fatalf("pull %s took %s", ref, took)
		}
		t.Logf("pull %s failed in %s: %v", ref, took.Round(time.Millisecond), err)
	}
}

func TestPrivateDaemonAdoptedAndStopped(t *testing.T) {
	need(t)
	ctx := ctxFor(t, 60*time.Second)
	dir, err := os.MkdirTemp("", "synod-rtd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	first, err := Start(ctx, Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pid := first.daemon.pid
	// A second Start on the same state dir (the kubelet restarted while
	// its containerd lived on) adopts the daemon instead of racing it.
	second, err := Start(ctx, Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if second.daemon == nil || second.daemon.pid != pid || second.Socket() != first.Socket() {
		t.Fatalf("second runtime did not adopt daemon pid %d", pid)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "containerd to exit", func() bool { return !alive(pid) || zombie(pid) })
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("containerd pid %d still alive", pid)
	}
}

// zombie reports an exited child that its parent has not reaped yet.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func TestStartErrors(t *testing.T) {
	start := time.Now()
	_, err := Start(context.Background(), Config{Socket: "/nonexistent/containerd.sock", StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no containerd socket") || time.Since(start) > time.Second {
		t.Fatalf("missing socket: err = %v after %s", err, time.Since(start))
	}
	if _, err := Start(context.Background(), Config{}); err == nil {
		t.Fatal("Start without StateDir succeeded")
	}
}

// TestStartupLatency reports create+start latency for 20 containers, 4 at
// a time (the runtime's share of pod startup), and checks it stays far
// below Kubernetes' 5 s SLO.
func TestStartupLatency(t *testing.T) {
	rt := env(t)
	const n, par = 20, 4
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			spec := ContainerSpec{ID: NewContainerID(), Image: shared.ref, PodUID: "lat", Name: fmt.Sprintf("c%d", i), Command: []string{"sleep", "1000"}, LogPath: filepath.Join(t.TempDir(), "0.log")}
			start := time.Now()
			ctx := ctxFor(t, 30*time.Second)
			if err := rt.CreateContainer(ctx, spec); err != nil {
				t.Error(err)
				return
			}
			defer func() {
				if err := rt.RemoveContainer(context.Background(), spec.ID); err != nil {
					t.Error(err)
				}
			}()
			if err := rt.StartContainer(ctx, spec.ID); err != nil {
				t.Error(err)
				return
			}
			lat[i] = time.Since(start)
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	t.Logf("create+start of %d containers (%d in parallel): p50 %s, max %s", n, par, lat[n/2].Round(time.Millisecond), lat[n-1].Round(time.Millisecond))
	if lat[n-1] > 3*time.Second {
		t.Fatalf("slowest create+start took %s", lat[n-1])
	}
}

// shimsOf lists the pids of containerd shims serving the daemon at sock.
func shimsOf(sock string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, sock) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestFollowRunningContainerLog(t *testing.T) {
	rt := env(t)
	spec := run(t, rt, ContainerSpec{Command: []string{"sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done; echo done >&2"}})
	ctx := ctxFor(t, 20*time.Second)
	var b strings.Builder
	start := time.Now()
	err := ReadLog(ctx, spec.LogPath, LogOptions{Tail: -1, Follow: true, Exited: func() bool { return rt.LogDone(ctx, spec.ID) }}, &b)
	if err != nil {
		t.Fatal(err)
	}
	if want := "line 1\nline 2\nline 3\nline 4\nline 5\ndone\n"; b.String() != want {
		t.Fatalf("followed %q, want %q", b.String(), want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("follow ended %s after start", d)
	}
}

// TestLostTaskIsExited: the whole worker dies at once, as systemd's default
// KillMode does to a unit (containerd, the shims and the containers
// together). A runtime started again on the same state dir finds the
// container Exited with code 255, as containerd's CRI reports a lost task,
// not Created, so the kubelet restarts it by its restart policy instead of
// waiting for a start that never comes.
func TestLostTaskIsExited(t *testing.T) {
	need(t)
	ctx := ctxFor(t, 90*time.Second)
	dir, err := os.MkdirTemp("", "synod-rtl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tarPath, ref := testimage.Busybox(t, t.TempDir())
	first, err := Start(ctx, Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = first.ImportImage(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	spec := ContainerSpec{ID: NewContainerID(), PodUID: "pod-lost", Name: "c", Image: ref,
		Command: []string{"sleep", "3600"}, LogPath: filepath.Join(t.TempDir(), "0.log")}
	if err := first.CreateContainer(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := first.StartContainer(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	st, err := first.ContainerStatus(ctx, spec.ID)
	if err != nil || st.Phase != Running || st.PID == 0 {
		t.Fatalf("status %+v %v", st, err)
	}
	ctr := int(st.PID)
	shim := parentPID(t, ctr)
	daemon := first.daemon.pid
	for _, pid := range []int{daemon, shim, ctr} {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	eventually(t, 15*time.Second, "containerd, shim and container gone", func() bool {
		return (!alive(daemon) || zombie(daemon)) && !alive(shim) && !alive(ctr)
	})
	_ = first.Close() // its daemon is gone already

	second, err := Start(ctx, Config{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	found, err := second.ListContainers(ctx, map[string]string{LabelPodUID: "pod-lost"})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].ID != spec.ID || found[0].Phase != Exited || found[0].ExitCode != 255 || found[0].FinishedAt.IsZero() {
		t.Fatalf("after the crash found %+v, want container %s Exited with 255", found, spec.ID)
	}
	if err := second.RemoveContainer(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
}

// parentPID reads pid's parent from /proc.
func parentPID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ppid := 0
	fmt.Sscanf(fields[1], "%d", &ppid)
	if ppid <= 1 {
		t.Fatalf("pid %d has parent %d", pid, ppid)
	}
	return ppid
}
