package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"synod/chaos"
)

// testbedLock is the nspawn testbed's machine-wide lock (the Ansible
// testbed test takes it too).
const testbedLock = "/run/lock/synod-testbed.lock"

// TestRemoteOnTestbed deploys 3 masters and 1 worker on the nspawn testbed
// with site.yml and runs `chaos run --inventory` against it: the leader's
// service killed through SSH, a whole master machine killed and booted
// again, a master's link cut. It takes about 10 minutes, so it runs only
// with SYNOD_CHAOS_INVENTORY_TEST=1 (not in make test).
func TestRemoteOnTestbed(t *testing.T) {
	if os.Getenv("SYNOD_CHAOS_INVENTORY_TEST") != "1" {
		t.Skip("set SYNOD_CHAOS_INVENTORY_TEST=1 (needs root and the nspawn testbed; about 10 minutes)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	for _, tool := range []string{"ansible-playbook", "systemd-nspawn", "debootstrap", "ssh", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s", tool)
		}
	}
	bin := os.Getenv("SYNOD_BINARY")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "synod")
		if out, err := exec.Command("go", "build", "-o", bin, "synod").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	bin, _ = filepath.Abs(bin)
	ansibleDir, _ := filepath.Abs("../ansible")
	tmp := t.TempDir()
	inventory := filepath.Join(tmp, "testbed.ini")
	env := []string{"ANSIBLE_NOCOLOR=1", "SYNOD_TESTBED_INVENTORY=" + inventory, "ANSIBLE_SSH_CONTROL_PATH_DIR=" + filepath.Join(tmp, "cp")}

	lock, err := os.OpenFile(testbedLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	deadline := time.Now().Add(15 * time.Minute)
	for {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			t.Fatalf("testbed lock %s: %v", testbedLock, err)
		}
		time.Sleep(time.Second)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	run := func(timeout time.Duration, name string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = ansibleDir, append(os.Environ(), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		return out.String(), err
	}
	if _, err := os.Stat("/var/lib/synod-testbed/machines"); err == nil {
		if out, err := run(3*time.Minute, "testbed/down.sh"); err != nil {
			t.Fatalf("down.sh (leftover testbed): %v\n%s", err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := run(3*time.Minute, "testbed/down.sh"); err != nil {
			t.Errorf("down.sh: %v\n%s", err, out)
		}
	})
	if out, err := run(10*time.Minute, "testbed/up.sh", "3", "1"); err != nil {
		t.Fatalf("up.sh 3 1: %v\n%s", err, out)
	}
	if out, err := run(10*time.Minute, "ansible-playbook", "-i", inventory, "site.yml", "-e", "synod_binary_src="+bin); err != nil {
		t.Fatalf("site.yml: %v\n%s", err, out)
	}

	kinds, err := chaos.ParseRemoteKinds("leader-kill,machine-stop,link-cut")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := chaos.RunRemote(ctx, chaos.RemoteOptions{Inventory: inventory, Kinds: kinds, Interval: 15 * time.Second,
		Count: 6, Seed: 3, ReportDir: filepath.Join(tmp, "report"), Progress: &progress})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("chaos run: %v", err)
	}
	var sum bytes.Buffer
	rep.Summary(&sum)
	t.Logf("summary:\n%s", sum.String())
	seen := map[string]bool{}
	for _, f := range rep.Faults {
		seen[f.Kind] = true
	}
	for _, k := range []string{"leader-kill", "machine-stop"} {
		if !seen[k] {
			t.Errorf("no %s fault in the run (faults: %v)", k, rep.Faults)
		}
	}
	for _, r := range rep.Results {
		if !r.Pass {
			t.Errorf("check %s failed: %s", r.Name, r.Evidence)
		}
	}
	if !rep.Pass() {
		t.Error("the report does not pass")
	}
	if !strings.Contains(sum.String(), "single-active") {
		t.Error("no single-active check in the summary")
	}
}
