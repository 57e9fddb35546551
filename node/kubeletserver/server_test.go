package kubeletserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"synod/internal/pki"
	"synod/internal/testimage"
	"synod/node/runtime"
)

func need(t *testing.T) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", testimage.BusyboxPath} {
		if missing != "" {
			break
		}
		if _, err := exec.LookPath(bin); err != nil {
			missing = bin + " (apt packages containerd, runc, busybox-static)"
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("kubeletserver test needs %s", missing)
	}
	t.Skipf("kubeletserver test needs %s", missing)
}

// byLabels finds containers as the kubelet does, by their runtime labels;
// in these tests the pod name is the pod UID.
type byLabels struct{ rt *runtime.Runtime }

func (b byLabels) FindContainer(ctx context.Context, ns, pod, container string, previous bool) (runtime.State, error) {
	ss, err := b.rt.ListContainers(ctx, map[string]string{runtime.LabelPodUID: pod, runtime.LabelContainerName: container})
	if err != nil {
		return runtime.State{}, err
	}
	if len(ss) == 0 || previous {
		return runtime.State{}, fmt.Errorf("container %q of pod %q: %w", container, pod, ErrNotFound)
	}
	return ss[0], nil
}

type env struct {
	t      *testing.T
	rt     *runtime.Runtime
	srv    *Server
	ca     *pki.CA
	client *http.Client
	rest   *rest.Config
	ref    string
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newEnv(t *testing.T) *env {
	t.Helper()
	need(t)
	dir, err := os.MkdirTemp("", "kls-rt-") // short: the containerd socket lives here
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	log := slog.New(slog.DiscardHandler)
	rt, err := runtime.Start(ctxFor(t, time.Minute), runtime.Config{StateDir: dir, Logger: log})
	if err != nil {
		t.Fatalf("start runtime: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		left, _ := rt.ListContainers(ctx, nil)
		for _, s := range left {
			if err := rt.RemoveContainer(ctx, s.ID); err != nil {
				t.Errorf("remove container: %v", err)
			}
		}
		if err := rt.Close(); err != nil {
			t.Errorf("close runtime: %v", err)
		}
	})
	img, ref := testimage.Busybox(t, t.TempDir())
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := rt.ImportImage(ctxFor(t, time.Minute), f); err != nil {
		t.Fatalf("import test image: %v", err)
	}
	ca, err := pki.NewEphemeralCA()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := Start(ctx, Config{Addr: "127.0.0.1:0", Containers: byLabels{rt}, Runtime: rt, ClientCAs: ca.Pool(),
		Hosts: []string{"127.0.0.1"}, Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, rt: rt, srv: srv, ca: ca, ref: ref}
	e.client, e.rest = e.clientAs(APIServerClientCN, nil)
	return e
}

// clientAs returns an HTTPS client and a rest.Config presenting a client
// certificate for user from the cluster CA.
func (e *env) clientAs(user string, groups []string) (*http.Client, *rest.Config) {
	certPEM, keyPEM, err := e.ca.IssueClient(user, groups, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		e.t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}
	e.t.Cleanup(tr.CloseIdleConnections)
	rc := &rest.Config{Host: "https://" + e.srv.Addr(), TLSClientConfig: rest.TLSClientConfig{Insecure: true, CertData: certPEM, KeyData: keyPEM}}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, rc
}

// run starts a container in pod uid running script.
func (e *env) run(uid, name, script string) runtime.ContainerSpec {
	e.t.Helper()
	spec := runtime.ContainerSpec{ID: runtime.NewContainerID(), PodUID: uid, Name: name, Image: e.ref,
		Command: []string{"sh", "-c", script}, LogPath: filepath.Join(e.t.TempDir(), name, "0.log")}
	ctx := ctxFor(e.t, 30*time.Second)
	if err := e.rt.CreateContainer(ctx, spec); err != nil {
		e.t.Fatal(err)
	}
	if err := e.rt.StartContainer(ctx, spec.ID); err != nil {
		e.t.Fatal(err)
	}
	return spec
}

func (e *env) get(path string) (int, string) {
	e.t.Helper()
	resp, err := e.client.Get("https://" + e.srv.Addr() + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitLog polls the log until it contains want (bounded).
func (e *env) waitLog(path, want string) string {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := e.get(path)
		if code == http.StatusOK && strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("GET %s = %d %q, want it to contain %q", path, code, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) exec(pod, container string, cmd []string, stdin io.Reader, tty bool) (string, string, error) {
	q := url.Values{"command": cmd, "stdout": {"true"}, "stderr": {fmt.Sprint(!tty)}, "stdin": {fmt.Sprint(stdin != nil)}, "tty": {fmt.Sprint(tty)}}
	u := fmt.Sprintf("https://%s/exec/default/%s/%s?%s", e.srv.Addr(), pod, container, q.Encode())
	ex, err := remotecommand.NewWebSocketExecutor(e.rest, http.MethodGet, u)
	if err != nil {
		e.t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err = ex.StreamWithContext(ctxFor(e.t, 30*time.Second), remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Stderr: &errb, Tty: tty})
	return out.String(), errb.String(), err
}

func TestLogsAndExec(t *testing.T) {
	e := newEnv(t)
	// stdout and stderr are separate pipes: the pause keeps their order.
	c := e.run("pod1", "c", "for i in 1 2 3; do echo line$i; done; sleep 0.3; echo oops >&2; sleep 1000")
	base := "/containerLogs/default/pod1/c"

	t.Run("logs", func(t *testing.T) {
		body := e.waitLog(base, "oops")
		if body != "line1\nline2\nline3\noops\n" {
			t.Fatalf("log = %q", body)
		}
		if _, body := e.get(base + "?tailLines=2"); body != "line3\noops\n" {
			t.Fatalf("tail 2 = %q", body)
		}
		if _, body := e.get(base + "?limitBytes=3"); body != "lin" {
			t.Fatalf("limitBytes 3 = %q", body)
		}
		if _, body := e.get(base + "?timestamps=true&tailLines=1"); !strings.HasSuffix(body, " oops\n") || !strings.Contains(body, "T") {
			t.Fatalf("timestamps = %q", body)
		}
		// The apiserver may name the exact container it read from the pod
		// status; it must be the named container.
		if code, body := e.get(base + "?tailLines=1&containerID=containerd://" + c.ID); code != http.StatusOK || body != "oops\n" {
			t.Fatalf("by container ID = %d %q", code, body)
		}
		if code, body := e.get("/containerLogs/default/pod1/other?containerID=containerd://" + c.ID); code != http.StatusNotFound {
			t.Fatalf("container ID of another container = %d %q, want 404", code, body)
		}
		if code, body := e.get(base + "?containerID=containerd://" + runtime.NewContainerID()); code != http.StatusNotFound {
			t.Fatalf("unknown container ID = %d %q, want 404", code, body)
		}
		if code, body := e.get("/containerLogs/default/pod1/nope"); code != http.StatusNotFound {
			t.Fatalf("unknown container = %d %q, want 404", code, body)
		}
		if code, _ := e.get(base + "?tailLines=x"); code != http.StatusBadRequest {
			t.Fatalf("bad tailLines = %d, want 400", code)
		}
	})

	t.Run("follow", func(t *testing.T) {
		spec := e.run("pod2", "f", "echo first; sleep 0.5; echo second; sleep 1000")
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.srv.Addr()+"/containerLogs/default/pod2/f?follow=true", nil)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		for _, want := range []string{"first\n", "second\n"} {
			line, err := r.ReadString('\n')
			if err != nil || line != want {
				t.Fatalf("followed line = %q, %v; want %q", line, err, want)
			}
		}
		// The stream ends by itself once the container is gone.
		if err := e.rt.StopContainer(ctxFor(t, 30*time.Second), spec.ID, time.Second); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
			t.Fatalf("after stop: %q, %v; want a clean end", rest, err)
		}
	})

	t.Run("exec", func(t *testing.T) {
		out, errOut, err := e.exec("pod1", "c", []string{"sh", "-c", "echo hi; echo there >&2"}, nil, false)
		if err != nil || out != "hi\n" || errOut != "there\n" {
			t.Fatalf("exec = %q %q %v", out, errOut, err)
		}
		out, _, err = e.exec("pod1", "c", []string{"cat"}, strings.NewReader("from stdin\n"), false)
		if err != nil || out != "from stdin\n" {
			t.Fatalf("exec -i cat = %q %v", out, err)
		}
		_, _, err = e.exec("pod1", "c", []string{"sh", "-c", "exit 3"}, nil, false)
		var exit utilexec.ExitError
		if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
			t.Fatalf("exit 3 = %v, want an ExitError with status 3", err)
		}
		out, _, err = e.exec("pod1", "c", []string{"sh", "-c", "tty >/dev/null && echo tty"}, strings.NewReader(""), true)
		if err != nil || !strings.Contains(out, "tty") {
			t.Fatalf("exec -t = %q %v", out, err)
		}
	})

	t.Run("exec client gone", func(t *testing.T) {
		q := url.Values{"command": {"sleep", "777"}, "stdout": {"true"}}
		ex, err := remotecommand.NewWebSocketExecutor(e.rest, http.MethodGet, fmt.Sprintf("https://%s/exec/default/pod1/c?%s", e.srv.Addr(), q.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		seen := make(chan bool, 1)
		go func() {
			// ps must see the process while its client is there, or the
			// check after the client left proves nothing.
			for ctx.Err() == nil {
				if out, _, _ := e.exec("pod1", "c", []string{"ps"}, nil, false); strings.Contains(out, "sleep 777") {
					seen <- true
					return
				}
			}
			seen <- false
		}()
		if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
			t.Fatal("sleep 777 ended before the client left")
		}
		if !<-seen {
			t.Fatal("ps did not show sleep 777 while its client was connected")
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _, err := e.exec("pod1", "c", []string{"ps"}, nil, false)
			if err == nil && !strings.Contains(out, "sleep 777") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("exec process outlived its client: %q, %v", out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("auth", func(t *testing.T) {
		// A cluster user that is neither the apiserver nor an admin.
		c, _ := e.clientAs("alice", []string{"dev"})
		resp, err := c.Get("https://" + e.srv.Addr() + base)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("alice = %d, want 403", resp.StatusCode)
		}
		// No client certificate: the TLS handshake fails.
		anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
		if resp, err := anon.Get("https://" + e.srv.Addr() + base); err == nil {
			resp.Body.Close()
			t.Fatalf("anonymous = %d, want a handshake failure", resp.StatusCode)
		}
		// A certificate from another CA.
		other, _ := pki.NewEphemeralCA()
		certPEM, keyPEM, _ := other.IssueClient(APIServerClientCN, nil, time.Hour)
		cert, _ := tls.X509KeyPair(certPEM, keyPEM)
		forged := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
		if resp, err := forged.Get("https://" + e.srv.Addr() + base); err == nil {
			resp.Body.Close()
			t.Fatalf("foreign CA = %d, want a handshake failure", resp.StatusCode)
		}
	})
}
