package apiserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"synod/apiserver/auth"
	"synod/internal/pki"
	"synod/internal/testimage"
	"synod/node/kubelet"
	"synod/node/kubeletserver"
	"synod/node/runtime"
)

// hostKubelet is the kubelet side of these tests: the real kubelet server
// in front of "containers" that are plain host processes and CRI log files
// the test writes, so that the apiserver's proxying is tested without
// containerd (node/kubeletserver tests it with real containers).
type hostKubelet struct {
	dir  string
	done atomic.Bool // every container's log is complete (ends -f)
}

func (h *hostKubelet) FindContainer(_ context.Context, ns, pod, container string, previous bool) (runtime.State, error) {
	if previous {
		return runtime.State{}, fmt.Errorf("previous %s: %w", container, kubeletserver.ErrNotFound)
	}
	return runtime.State{ID: ns + "_" + pod + "_" + container, Phase: runtime.Running,
		LogPath: filepath.Join(h.dir, ns+"_"+pod+"_"+container+".log")}, nil
}

func (h *hostKubelet) ContainerStatus(context.Context, string) (runtime.State, error) {
	return runtime.State{}, fmt.Errorf("no container IDs here: %w", kubeletserver.ErrNotFound)
}

func (h *hostKubelet) ExecStream(ctx context.Context, _ string, o runtime.ExecOptions) (int, error) {
	cmd := exec.CommandContext(ctx, o.Cmd[0], o.Cmd[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}

func (h *hostKubelet) LogDone(context.Context, string) bool { return h.done.Load() }

func (h *hostKubelet) appendLog(t *testing.T, ns, pod, container string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(h.dir, ns+"_"+pod+"_"+container+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), l)
	}
}

type podProxyEnv struct {
	ca         *pki.CA
	api        *testAPI
	kl         *hostKubelet
	kubeconfig string
}

func newPodProxyEnv(t *testing.T) *podProxyEnv {
	t.Helper()
	api := newTestAPI(t)
	ca, err := pki.NewEphemeralCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueClient(kubeletserver.APIServerClientCN, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	api.srv.SetKubeletClient(&tls.Config{Certificates: []tls.Certificate{cert}})
	kl := &hostKubelet{dir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ks, err := kubeletserver.Start(ctx, kubeletserver.Config{Addr: "127.0.0.1:0", Containers: kl, Runtime: kl,
		ClientCAs: ca.Pool(), Hosts: []string{"127.0.0.1"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	c := api.client.CoreV1()
	bg := context.Background()
	if node, err = c.Nodes().Create(bg, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(ks.Port())
	if _, err := c.Nodes().UpdateStatus(bg, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]
current-context: c
`, api.http.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &podProxyEnv{ca: ca, api: api, kl: kl, kubeconfig: kc}
}

// pod creates a pod bound to n1 with the given containers and status.
func (e *podProxyEnv) pod(t *testing.T, name string, containers []string, state func(c string) corev1.ContainerState) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "n1"}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
	}
	c := e.api.client.CoreV1().Pods("default")
	p, err := c.Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	for _, name := range containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: name, State: state(name)})
	}
	if _, err := c.UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func running(string) corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}

// needContainers skips (fails in CI) without root, containerd and busybox.
func needContainers(t *testing.T) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", testimage.BusyboxPath} {
		if _, err := exec.LookPath(bin); err != nil && missing == "" {
			missing = bin + " (apt packages containerd, runc, busybox-static)"
		}
	}
	switch {
	case missing == "":
	case os.Getenv("CI") == "true":
		t.Fatalf("this test needs %s", missing)
	default:
		t.Skipf("this test needs %s", missing)
	}
}

func kubectlBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kubectl not found")
		}
		t.Skip("kubectl not found")
	}
	return bin
}

func (e *podProxyEnv) kubectl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlBin(t), append([]string{"--kubeconfig", e.kubeconfig, "--request-timeout=20s"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+t.TempDir())
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPodLogsThroughKubelet(t *testing.T) {
	e := newPodProxyEnv(t)
	e.pod(t, "web", []string{"c"}, running)
	e.kl.appendLog(t, "default", "web", "c", "line1", "line2", "line3")

	if out, err := e.kubectl(t, "", "logs", "web"); err != nil || out != "line1\nline2\nline3\n" {
		t.Fatalf("kubectl logs = %q, %v", out, err)
	}
	if out, err := e.kubectl(t, "", "logs", "web", "--tail=1"); err != nil || out != "line3\n" {
		t.Fatalf("kubectl logs --tail=1 = %q, %v", out, err)
	}
	if out, err := e.kubectl(t, "", "logs", "web", "-c", "nope"); err == nil || !strings.Contains(out, "container nope is not valid for pod web") {
		t.Fatalf("kubectl logs -c nope = %q, %v", out, err)
	}

	// Several containers and none named: Kubernetes' message lists them.
	e.pod(t, "multi", []string{"a", "b"}, running)
	// Stream is what kubectl uses (DoRaw decodes errors differently).
	rc, err := e.api.client.CoreV1().Pods("default").GetLogs("multi", &corev1.PodLogOptions{}).Stream(context.Background())
	if err == nil {
		rc.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "a container name must be specified for pod multi, choose one of: [a b]") {
		t.Fatalf("logs of multi without container: %v", err)
	}
	e.kl.appendLog(t, "default", "multi", "b", "from b")
	if out, err := e.kubectl(t, "", "logs", "multi", "-c", "b"); err != nil || out != "from b\n" {
		t.Fatalf("kubectl logs -c b = %q, %v", out, err)
	}

	// A container that has not started yet.
	e.pod(t, "pending", []string{"c"}, func(string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	})
	if out, err := e.kubectl(t, "", "logs", "pending"); err == nil || !strings.Contains(out, `container "c" in pod "pending" is waiting to start: ContainerCreating`) {
		t.Fatalf("kubectl logs pending = %q, %v", out, err)
	}
	if out, err := e.kubectl(t, "", "logs", "web", "--previous"); err == nil || !strings.Contains(out, `previous terminated container "c" in pod "web" not found`) {
		t.Fatalf("kubectl logs --previous = %q, %v", out, err)
	}
}

func TestPodLogsFollow(t *testing.T) {
	e := newPodProxyEnv(t)
	e.pod(t, "web", []string{"c"}, running)
	e.kl.appendLog(t, "default", "web", "c", "first")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlBin(t), "--kubeconfig", e.kubeconfig, "logs", "-f", "web")
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill() // by its pid, if it is still there
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	// A line written after kubectl started arrives through the open stream.
	e.kl.appendLog(t, "default", "web", "c", "second")
	if line, err := r.ReadString('\n'); err != nil || line != "second\n" {
		t.Fatalf("followed line = %q, %v", line, err)
	}
	// The container exits: the stream, and kubectl, end by themselves.
	e.kl.done.Store(true)
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after exit: %q, %v", rest, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubectl logs -f: %v", err)
	}
}

func TestPodExecThroughKubelet(t *testing.T) {
	e := newPodProxyEnv(t)
	e.pod(t, "web", []string{"c"}, running)
	if out, err := e.kubectl(t, "", "exec", "web", "--", "echo", "hi"); err != nil || out != "hi\n" {
		t.Fatalf("kubectl exec echo = %q, %v", out, err)
	}
	if out, err := e.kubectl(t, "some input\n", "exec", "-i", "web", "--", "cat"); err != nil || out != "some input\n" {
		t.Fatalf("kubectl exec -i cat = %q, %v", out, err)
	}
	out, err := e.kubectl(t, "", "exec", "web", "--", "sh", "-c", "echo to-stderr >&2; exit 3")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(out, "to-stderr") {
		t.Fatalf("kubectl exec exit 3 = %q, %v; want exit code 3 and the stderr line", out, err)
	}
	e.pod(t, "starting", []string{"c"}, func(string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	})
	if out, err := e.kubectl(t, "", "exec", "starting", "--", "true"); err == nil || !strings.Contains(out, "container not found") {
		t.Fatalf("kubectl exec into a waiting container = %q, %v", out, err)
	}
}

// TestPodLogsExecRealKubelet is the whole path with real parts: kubectl ->
// this apiserver -> the kubelet server on the node's IP and default port ->
// a real kubelet running a hostNetwork pod on a private containerd.
func TestPodLogsExecRealKubelet(t *testing.T) {
	needContainers(t)
	bin := kubectlBin(t)
	e := newPodProxyEnv(t) // its fake kubelet serves node n1 only
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	rtDir, err := os.MkdirTemp("", "pp-rt-") // short: the containerd socket lives here
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rtDir) })
	rt, err := runtime.Start(ctx, runtime.Config{StateDir: rtDir, Logger: log})
	if err != nil {
		t.Fatalf("start runtime: %v", err)
	}
	t.Cleanup(func() {
		left, _ := rt.ListContainers(context.Background(), nil)
		for _, s := range left {
			// Stop first: a running task keeps its shim alive otherwise.
			rt.StopContainer(context.Background(), s.ID, 0)
			if err := rt.RemoveContainer(context.Background(), s.ID); err != nil {
				t.Errorf("remove container: %v", err)
			}
		}
		if err := rt.Close(); err != nil {
			t.Errorf("close runtime: %v", err)
		}
		killShimsOf(t, rtDir)
	})
	img, ref := testimage.Busybox(t, t.TempDir())
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.ImportImage(ctx, f)
	f.Close()
	if err != nil {
		t.Fatalf("import test image: %v", err)
	}

	// A loopback address of its own, so that the kubelet server can take
	// the default port 10250 (the Node reports no daemonEndpoints port)
	// without colliding with another test.
	nodeIP := fmt.Sprintf("127.%d.%d.%d", 1+os.Getpid()%250, 1+(os.Getpid()/250)%250, 2+int(time.Now().UnixNano()%200))
	kl, err := kubelet.New(kubelet.Config{Client: e.api.client, NodeName: "real", NodeIP: nodeIP, Runtime: rt,
		StateDir: t.TempDir(), Logger: log, Registerer: prometheus.NewRegistry(), BackoffBase: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	klDone := make(chan error, 1)
	klCtx, klCancel := context.WithCancel(ctx)
	go func() { klDone <- kl.Run(klCtx) }()
	t.Cleanup(func() {
		klCancel()
		select {
		case <-klDone:
		case <-time.After(30 * time.Second):
			t.Error("kubelet did not stop")
		}
	})
	if _, err := kubeletserver.Start(ctx, kubeletserver.Config{Addr: net.JoinHostPort(nodeIP, strconv.Itoa(kubeletserver.DefaultPort)),
		Containers: kl, Runtime: rt, ClientCAs: e.ca.Pool(), Hosts: []string{nodeIP}, Logger: log}); err != nil {
		t.Fatal(err)
	}

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "real", Namespace: "default"}, Spec: corev1.PodSpec{
		NodeName: "real", HostNetwork: true, TerminationGracePeriodSeconds: new(int64),
		Containers: []corev1.Container{{Name: "c", Image: ref, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", "echo one; echo two; echo three; i=0; while true; do sleep 0.2; i=$((i+1)); echo tick$i; done"}}}}}
	pods := e.api.client.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pods.Delete(context.Background(), "real", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := pods.Get(ctx, "real", metav1.GetOptions{})
		if err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not running: %+v, %v", p.Status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Without a container ID from the apiserver the kubelet server asks
	// the kubelet, which finds the container by its runtime labels.
	p, _ := pods.Get(ctx, "real", metav1.GetOptions{})
	if st, err := kl.FindContainer(ctx, "default", "real", "c", false); err != nil || "containerd://"+st.ID != p.Status.ContainerStatuses[0].ContainerID {
		t.Fatalf("FindContainer = %s, %v; want the status's %s", st.ID, err, p.Status.ContainerStatuses[0].ContainerID)
	}
	if _, err := kl.FindContainer(ctx, "default", "real", "c", true); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("FindContainer previous of a first attempt: %v, want not found", err)
	}
	if _, err := kl.FindContainer(ctx, "default", "real", "nope", false); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("FindContainer of an unknown container: %v, want not found", err)
	}

	run := func(stdin string, args ...string) (string, error) {
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, bin, append([]string{"--kubeconfig", e.kubeconfig, "--request-timeout=20s"}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECACHEDIR="+t.TempDir())
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("", "logs", "real"); err != nil || !strings.HasPrefix(out, "one\ntwo\nthree\n") {
		t.Fatalf("kubectl logs = %q, %v", out, err)
	}
	// The last line is "three" until the first tick, 0.2 s in.
	if out, err := run("", "logs", "real", "--tail=1"); err != nil || !(out == "three\n" || strings.HasPrefix(out, "tick")) || strings.Count(out, "\n") != 1 {
		t.Fatalf("kubectl logs --tail=1 = %q, %v", out, err)
	}
	// -f: two new ticks arrive through the open stream; then stop reading.
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	follow := exec.CommandContext(cctx, bin, "--kubeconfig", e.kubeconfig, "logs", "-f", "--tail=0", "real")
	follow.Env = append(os.Environ(), "KUBECACHEDIR="+t.TempDir())
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	for range 2 {
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "tick") {
			t.Fatalf("kubectl logs -f line = %q, %v", line, err)
		}
	}
	follow.Process.Kill()
	follow.Wait()

	if out, err := run("", "exec", "real", "--", "echo", "hi"); err != nil || out != "hi\n" {
		t.Fatalf("kubectl exec echo hi = %q, %v", out, err)
	}
	if out, err := run("piped in\n", "exec", "-i", "real", "--", "cat"); err != nil || out != "piped in\n" {
		t.Fatalf("kubectl exec -i cat = %q, %v", out, err)
	}

	// --previous: a container that exits and is restarted.
	crash := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash", Namespace: "default"}, Spec: corev1.PodSpec{
		NodeName: "real", HostNetwork: true, TerminationGracePeriodSeconds: new(int64),
		Containers: []corev1.Container{{Name: "c", Image: ref, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", "echo attempt; exit 1"}}}}}
	if _, err := pods.Create(ctx, crash, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pods.Delete(context.Background(), "crash", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	deadline = time.Now().Add(30 * time.Second)
	for {
		p, err := pods.Get(ctx, "crash", metav1.GetOptions{})
		if err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].LastTerminationState.Terminated != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod never restarted: %+v, %v", p.Status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := run("", "logs", "crash", "--previous"); err != nil || out != "attempt\n" {
		t.Fatalf("kubectl logs --previous = %q, %v", out, err)
	}

	// -it as kubectl does it, with a terminal size (kubectl itself
	// refuses a TTY when its stdin is not a terminal).
	q := url.Values{"command": {"sh", "-c", `tty; for i in $(seq 100); do [ "$(stty size)" = "30 100" ] && echo sized && exit 0; sleep 0.05; done; echo unsized`},
		"stdin": {"true"}, "stdout": {"true"}, "tty": {"true"}}
	ex, err := remotecommand.NewWebSocketExecutor(e.api.config, http.MethodGet, e.api.http.URL+"/api/v1/namespaces/default/pods/real/exec?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sizes := &fixedSize{size: remotecommand.TerminalSize{Height: 30, Width: 100}}
	ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
	defer ecancel()
	// A terminal's input stays open (an EOF on a TTY is a hangup).
	stdin, keepOpen := io.Pipe()
	defer keepOpen.Close()
	err = ex.StreamWithContext(ectx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
	if err != nil || !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "sized") || strings.Contains(out.String(), "unsized") {
		t.Fatalf("exec -it = %q, %v; want a pts and the terminal size 30x100", out.String(), err)
	}
}

// fixedSize reports one terminal size, then no more (as a terminal that is
// never resized).
type fixedSize struct {
	size remotecommand.TerminalSize
	sent atomic.Bool
}

func (f *fixedSize) Next() *remotecommand.TerminalSize {
	if f.sent.Swap(true) {
		return nil
	}
	return &f.size
}

// TestPodLogExecAuthorization: pods/log is "get pods/log" and pods/exec is
// "create pods/exec" (also over a WebSocket GET), checked before the
// request reaches any kubelet.
func TestPodLogExecAuthorization(t *testing.T) {
	e := newPodProxyEnv(t)
	e.pod(t, "web", []string{"c"}, running)
	e.kl.appendLog(t, "default", "web", "c", "secret line")
	tokens := filepath.Join(t.TempDir(), "tokens.csv")
	if err := os.WriteFile(tokens, []byte("admintoken,admin,1,system:masters\nreadertoken,reader,2\nlisttoken,lister,3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ta, err := auth.NewTokenFile(tokens)
	if err != nil {
		t.Fatal(err)
	}
	e.api.srv.SetAuth(e.api.srv.NewAuth(ta))
	admin := rest.CopyConfig(e.api.config)
	admin.BearerToken = "admintoken"
	ac := kubernetes.NewForConfigOrDie(admin)
	ctx := context.Background()
	for user, rules := range map[string][]rbacv1.PolicyRule{
		"reader": {{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get"}}},
		"lister": {{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	} {
		if _, err := ac.RbacV1().Roles("default").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ac.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: user},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: user}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// kubectl sends bearer tokens over TLS only. HTTP/2 is on, as on a
	// master: logs stream over it, exec upgrades over HTTP/1.1.
	tlsAPI := httptest.NewUnstartedServer(e.api.srv)
	tlsAPI.EnableHTTP2 = true
	tlsAPI.StartTLS()
	t.Cleanup(tlsAPI.Close)
	kubectlAs := func(token string, args ...string) (string, error) {
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]
current-context: c
`, tlsAPI.URL, token)), 0o600); err != nil {
			t.Fatal(err)
		}
		return (&podProxyEnv{kubeconfig: kc}).kubectl(t, "", args...)
	}
	// Role bindings reach the authorizer's cache within a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := kubectlAs("readertoken", "logs", "web")
		if err == nil && out == "secret line\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader: kubectl logs = %q, %v", out, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := kubectlAs("listtoken", "logs", "web"); err == nil || !strings.Contains(out, `cannot get resource "pods/log"`) {
		t.Fatalf("lister: kubectl logs = %q, %v; want forbidden", out, err)
	}
	if out, err := kubectlAs("readertoken", "exec", "web", "--", "echo", "hi"); err == nil || !strings.Contains(out, `cannot create resource "pods/exec"`) {
		t.Fatalf("reader: kubectl exec = %q, %v; want forbidden", out, err)
	}
	if out, err := kubectlAs("admintoken", "exec", "web", "--", "echo", "hi"); err != nil || out != "hi\n" {
		t.Fatalf("admin: kubectl exec = %q, %v", out, err)
	}
}

// killShimsOf stops, by pid, any containerd shim still serving the private
// daemon under dir: the test started them and must not leave them behind.
func killShimsOf(t *testing.T, dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmd), "containerd-shim") || !strings.Contains(string(cmd), dir) {
			continue
		}
		t.Logf("killing leftover shim %d", pid)
		syscall.Kill(-pid, syscall.SIGKILL) // its own process group: shim and container
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
