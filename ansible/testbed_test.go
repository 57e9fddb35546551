package ansible_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The test image every worker of site.yml imports (synod image busybox).
const busyboxImage = "docker.io/library/busybox:synod-test"

// lockPath serialises users of the machine-wide testbed (its bridge,
// network namespaces and state dir have fixed names).
const lockPath = "/run/lock/synod-testbed.lock"

// need skips (or, in CI, fails) the test when something the testbed needs
// is missing.
func need(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"ansible-playbook", "systemd-nspawn", "debootstrap", "ssh", "ssh-keygen", "ip", "flock"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("the Ansible testbed needs %s", strings.Join(missing, ", "))
	}
	t.Skipf("the Ansible testbed needs %s", strings.Join(missing, ", "))
}

// synodBinary is $SYNOD_BINARY (make test sets it) or a fresh build.
func synodBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SYNOD_BINARY"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "synod")
	if out, err := exec.Command("go", "build", "-o", bin, "synod").CombinedOutput(); err != nil {
		t.Fatalf("go build synod: %v\n%s", err, out)
	}
	return bin
}

// run runs a command in the ansible dir within timeout, in its own process
// group so that a timeout kills it and its children (ssh) by group id.
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %v (%s)", name, strings.Join(args, " "), err, time.Since(start).Round(time.Second))
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return out.String(), err
}

// recap parses ansible-playbook's PLAY RECAP: host -> counter -> value.
func recap(t *testing.T, out string) map[string]map[string]int {
	t.Helper()
	i := strings.LastIndex(out, "PLAY RECAP")
	if i < 0 {
		t.Fatalf("no PLAY RECAP in the output:\n%s", out)
	}
	line := regexp.MustCompile(`(?m)^(\S+)\s+:\s+(.*)$`)
	field := regexp.MustCompile(`(\w+)=(\d+)`)
	hosts := map[string]map[string]int{}
	for _, m := range line.FindAllStringSubmatch(out[i:], -1) {
		counts := map[string]int{}
		for _, f := range field.FindAllStringSubmatch(m[2], -1) {
			n, _ := strconv.Atoi(f[2])
			counts[f[1]] = n
		}
		hosts[m[1]] = counts
	}
	return hosts
}

// TestLint: yamllint and ansible-lint (offline: no collection installs)
// are clean over the playbooks, roles and inventories.
func TestLint(t *testing.T) {
	for _, tool := range []string{"yamllint", "ansible-lint"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("needs %s", tool)
			}
			t.Skipf("needs %s", tool)
		}
	}
	if out, err := run(t, 2*time.Minute, nil, "yamllint", "--strict", "."); err != nil {
		t.Errorf("yamllint: %v\n%s", err, out)
	}
	if out, err := run(t, 3*time.Minute, nil, "ansible-lint", "--offline"); err != nil {
		t.Errorf("ansible-lint: %v\n%s", err, out)
	}
}

// TestEvenMastersStopBeforeTouchingHosts: a 4-master inventory fails in the
// control host's validation play; no machine (all unreachable TEST-NET
// addresses) appears in the recap.
func TestEvenMastersStopBeforeTouchingHosts(t *testing.T) {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs ansible-playbook")
		}
		t.Skip("needs ansible-playbook")
	}
	out, err := run(t, 2*time.Minute, []string{"ANSIBLE_NOCOLOR=1"}, "ansible-playbook", "-i", "tests/inventories/even.ini", "site.yml")
	if err == nil {
		t.Fatalf("site.yml accepted 4 masters:\n%s", out)
	}
	if !strings.Contains(out, "the inventory has 4 masters") || !strings.Contains(out, "use an odd") {
		t.Fatalf("no clear message about the even number of masters:\n%s", out)
	}
	hosts := recap(t, out)
	if len(hosts) != 1 || hosts["localhost"] == nil || hosts["localhost"]["failed"] != 1 {
		t.Fatalf("want only localhost (failed) in the recap, got %v:\n%s", hosts, out)
	}
}

// TestTestbedBootstrap brings up the nspawn testbed with 3 masters and 1
// worker, bootstraps it with site.yml, checks through the admin kubeconfig
// site.yml left on the control host that the worker is Ready and runs a
// pod, runs site.yml again and requires changed=0, and tears it all down.
func TestTestbedBootstrap(t *testing.T) {
	need(t)
	bin := synodBinary(t)
	tmp := t.TempDir()
	inventory := filepath.Join(tmp, "testbed.ini")
	env := []string{"ANSIBLE_NOCOLOR=1", "SYNOD_TESTBED_INVENTORY=" + inventory,
		"ANSIBLE_SSH_CONTROL_PATH_DIR=" + filepath.Join(tmp, "cp")}

	// One testbed per machine at a time: wait (bounded) for the lock.
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			t.Fatalf("testbed lock %s: %v", lockPath, err)
		}
		time.Sleep(time.Second)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	// A testbed left by a crashed run (we hold the lock, so it is nobody's).
	if _, err := os.Stat("/var/lib/synod-testbed/machines"); err == nil {
		if out, err := run(t, 2*time.Minute, env, "testbed/down.sh"); err != nil {
			t.Fatalf("down.sh (leftover testbed): %v\n%s", err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := run(t, 3*time.Minute, env, "testbed/down.sh"); err != nil {
			t.Errorf("down.sh: %v\n%s", err, out)
		}
	})
	// Up to 10 minutes: the first run on a machine debootstraps the rootfs.
	if out, err := run(t, 10*time.Minute, env, "testbed/up.sh", "3", "1"); err != nil {
		t.Fatalf("up.sh 3 1: %v\n%s", err, out)
	}

	var lastOut string
	site := func(what string) map[string]map[string]int {
		out, err := run(t, 8*time.Minute, env, "ansible-playbook", "-i", inventory, "site.yml", "-e", "synod_binary_src="+bin)
		if err != nil {
			journals(t, env, inventory)
			t.Fatalf("site.yml (%s): %v\n%s", what, err, out)
		}
		lastOut = out
		hosts := recap(t, out)
		for _, h := range []string{"m1", "m2", "m3", "w1"} {
			if hosts[h] == nil || hosts[h]["failed"] != 0 || hosts[h]["unreachable"] != 0 {
				t.Fatalf("site.yml (%s): host %s: %v\n%s", what, h, hosts[h], out)
			}
		}
		return hosts
	}
	first := site("first run")
	if first["m1"]["changed"] == 0 {
		t.Errorf("the first run changed nothing on m1: %v", first["m1"])
	}

	kubeconfig := filepath.Join(tmp, "synod-testbed", "admin.kubeconfig")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("the admin kubeconfig site.yml made: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node w1: %v", err)
	}
	if !ready(node) {
		t.Fatalf("node w1 is not Ready after site.yml: %+v", node.Status.Conditions)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "testbed-busybox", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "busybox", Image: busyboxImage,
			ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	var last *corev1.Pod
	for last == nil || last.Status.Phase != corev1.PodRunning {
		if ctx.Err() != nil {
			journals(t, env, inventory)
			t.Fatalf("pod not Running within 3 minutes: %+v", last)
		}
		time.Sleep(time.Second)
		if p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{}); err == nil {
			last = p
		}
	}
	if last.Spec.NodeName != "w1" {
		t.Errorf("pod runs on %q, want w1", last.Spec.NodeName)
	}
	t.Logf("pod %s Running on %s (IP %s)", last.Name, last.Spec.NodeName, last.Status.PodIP)

	second := site("second run")
	for h, c := range second {
		if c["changed"] != 0 {
			t.Errorf("second site.yml run: host %s changed=%d, want 0; changed tasks:\n%s", h, c["changed"], changedTasks(lastOut))
		}
	}
}

// changedTasks lists the "TASK [...]" headers followed by a "changed:" line.
func changedTasks(out string) string {
	var b strings.Builder
	task := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "TASK [") {
			task = line
		} else if strings.HasPrefix(line, "changed: ") {
			fmt.Fprintf(&b, "%s\n  %s\n", task, line)
		}
	}
	return b.String()
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// journals logs the synod units' last lines from every machine, to explain
// a failure.
func journals(t *testing.T, env []string, inventory string) {
	t.Helper()
	out, _ := run(t, time.Minute, env, "ansible", "-i", inventory, "all", "-m", "ansible.builtin.shell",
		"-a", "journalctl --no-pager -n 40 -u synod-master -u synod-worker")
	t.Logf("journals:\n%s", out)
}
