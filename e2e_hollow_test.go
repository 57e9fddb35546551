package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"synod/internal/launch"
)

// hollowNodes is a running `synod hollow-nodes` process.
type hollowNodes struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startHollowNodes runs `synod hollow-nodes` against every master of c
// (failing over between them) with the given extra flags (e.g. --count 2
// --name-prefix node-), waits until its first node exists, and stops it by
// pid when the test ends. Node names are <prefix>1..<prefix>N.
func startHollowNodes(t *testing.T, c *launch.Cluster, firstNode string, args ...string) *hollowNodes {
	t.Helper()
	full := []string{"hollow-nodes", "--kubeconfig", c.KubeconfigPath(), "--lease-renew-interval", "500ms"}
	for _, m := range c.Masters() {
		full = append(full, "--server", m.APIURL)
	}
	full = append(full, args...)
	logf, err := os.OpenFile(filepath.Join(c.Dir(), "hollow-"+firstNode+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(synodBinary, full...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	h := &hollowNodes{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(h.done)
	}()
	t.Cleanup(func() { h.kill(syscall.SIGTERM) })
	client := failoverClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := client.CoreV1().Nodes().Get(ctx, firstNode, metav1.GetOptions{}); err == nil {
			return h
		}
		select {
		case <-h.done:
			t.Fatalf("synod hollow-nodes exited: %v (log in %s)", cmd.ProcessState, c.Dir())
		case <-ctx.Done():
			t.Fatalf("node %s never registered", firstNode)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// failoverClient is an admin client-go client that moves to another master
// when the one it talks to dies.
func failoverClient(t *testing.T, c *launch.Cluster) kubernetes.Interface {
	t.Helper()
	var current atomic.Int32
	return kubernetes.NewForConfigOrDie(failoverConfig(t, c, 0, &current))
}

// kill signals the process and waits for it to exit (SIGKILL after 10s).
func (h *hollowNodes) kill(sig syscall.Signal) {
	select {
	case <-h.done:
		return
	default:
	}
	syscall.Kill(h.cmd.Process.Pid, sig)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.done
	}
}
