package main

import (
	"context"
	"fmt"
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

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runSynod runs a synod command to completion and returns its combined output
// and exit code.
func runSynod(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(synodBinary, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// startMasterProcess starts `synod master args...`, stopped by its pid when the
// test ends.
func startMasterProcess(t *testing.T, logFile string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	// No Kubernetes API unless asked: the default port 6443 would clash.
	cmd := exec.Command(synodBinary, append([]string{"master", "--secure-port", "0"}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

// A snapshot saved from a running cluster restores into a new 3-member
// cluster with the same data and revision; a corrupt one is refused.
func TestSnapshotSaveAndRestoreIntoNewCluster(t *testing.T) {
	src := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: src.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i := 0; i < 50; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("snap/%02d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	cli.Delete(ctx, "snap/00")
	want, err := cli.Get(ctx, "snap/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	if out, code := runSynod(t, "snapshot", "save", file, "--endpoints", src.Endpoints()[1]); code != 0 {
		t.Fatalf("snapshot save: exit %d: %s", code, out)
	}

	// Corrupt copies are refused with a clear error and no data dir.
	data, _ := os.ReadFile(file)
	bad := filepath.Join(dir, "bad.db")
	flipped := append([]byte{}, data...)
	flipped[len(flipped)/2] ^= 0xff
	os.WriteFile(bad, flipped, 0o600)
	out, code := runSynod(t, "snapshot", "restore", bad, "--data-dir", filepath.Join(dir, "never"), "--name", "x",
		"--initial-advertise-peer-urls", "http://127.0.0.1:1", "--initial-cluster", "x=http://127.0.0.1:1")
	if code == 0 || !strings.Contains(strings.ToLower(out), "snapshot") {
		t.Fatalf("restore of a corrupt snapshot: exit %d: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "never", "raft.db")); err == nil {
		t.Fatal("a corrupt snapshot left a data dir behind")
	}
	os.WriteFile(bad, data[:len(data)/3], 0o600)
	if out, code := runSynod(t, "snapshot", "restore", bad, "--data-dir", filepath.Join(dir, "never2"), "--name", "x",
		"--initial-advertise-peer-urls", "http://127.0.0.1:1", "--initial-cluster", "x=http://127.0.0.1:1"); code == 0 {
		t.Fatalf("restore of a truncated snapshot succeeded: %s", out)
	}

	// Restore into three fresh data dirs and start a new cluster on them.
	var names, peers, initial []string
	for i := 1; i <= 3; i++ {
		names = append(names, fmt.Sprintf("r%d", i))
		peers = append(peers, "http://"+freePort(t))
		initial = append(initial, names[i-1]+"="+peers[i-1])
	}
	var endpoints []string
	for i := range names {
		dd := filepath.Join(dir, names[i])
		if out, code := runSynod(t, "snapshot", "restore", file, "--data-dir", dd, "--name", names[i],
			"--initial-advertise-peer-urls", peers[i], "--initial-cluster", strings.Join(initial, ",")); code != 0 {
			t.Fatalf("restore %s: exit %d: %s", names[i], code, out)
		}
		client := "http://" + freePort(t)
		endpoints = append(endpoints, client)
		startMasterProcess(t, dd+".log", "--name", names[i], "--data-dir", dd, "--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i], "--initial-cluster", strings.Join(initial, ","))
	}
	for _, ep := range endpoints {
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		var got *clientv3.GetResponse
		deadline := time.Now().Add(30 * time.Second)
		for {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			got, err = one.Get(rctx, "snap/", clientv3.WithPrefix())
			rcancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("restored member %s never served: %v", ep, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		one.Close()
		if len(got.Kvs) != len(want.Kvs) || got.Header.Revision < want.Header.Revision {
			t.Fatalf("restored %s: %d keys at rev %d, want %d at >= %d", ep, len(got.Kvs), got.Header.Revision, len(want.Kvs), want.Header.Revision)
		}
		for i := range got.Kvs {
			if string(got.Kvs[i].Value) != string(want.Kvs[i].Value) || got.Kvs[i].ModRevision != want.Kvs[i].ModRevision {
				t.Fatalf("restored %s differs at %s", ep, got.Kvs[i].Key)
			}
		}
	}
	// The restored cluster takes writes.
	rc, _ := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	defer rc.Close()
	if _, err := rc.Put(ctx, "after-restore", "ok"); err != nil {
		t.Fatalf("write to restored cluster: %v", err)
	}
}
