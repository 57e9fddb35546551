package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"synod/internal/launch"
)

const etcdServer = "/usr/bin/etcd"

// startEtcdCluster starts a real etcd cluster (Debian's 3.4, which speaks the
// same v3 API as synod) through the launcher, so the client commands are
// tested against the reference implementation.
func startEtcdCluster(t *testing.T, n int) *launch.Cluster {
	t.Helper()
	if _, err := os.Stat(etcdServer); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (run `make deps`)", etcdServer)
		}
		t.Skipf("%s is not installed (run `make deps`)", etcdServer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := launch.Start(ctx, launch.Options{
		Command:     launch.EtcdCommand(etcdServer),
		Masters:     n,
		Dir:         t.TempDir(),
		StopTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() { c.Stop() })
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("etcd not ready: %v", err)
	}
	return c
}

// waitFor blocks for d; used only between retries of a request the server
// refused for a time-based reason.
func waitFor(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// mustRun runs synod in-process and fails unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("synod %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	return out
}

func TestClientCommandsAgainstEtcd(t *testing.T) {
	c := startEtcdCluster(t, 3)
	eps := c.Endpoints()
	clusterFile := c.StateFile()

	out := mustRun(t, "member", "list", "--endpoints", eps[0])
	for _, name := range []string{"m1", "m2", "m3"} {
		if !strings.Contains(out, " "+name+" ") {
			t.Fatalf("member list lacks %s:\n%s", name, out)
		}
	}
	if !strings.HasPrefix(out, "ID  ") || strings.Count(strings.TrimSpace(out), "\n") != 3 {
		t.Fatalf("member list table:\n%s", out)
	}

	// status: one row per endpoint, exactly one leader, names from MemberList.
	for _, args := range [][]string{
		{"status", "--cluster-file", clusterFile},
		{"status", "--cluster-file", c.Dir()},
		{"status", "--endpoints", eps[1], "--cluster"},
		{"status", "--endpoints", strings.Join(eps, ",")},
	} {
		out = mustRun(t, args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.Contains(lines[0], "REVISION") || strings.Count(out, " true ") != 1 {
			t.Fatalf("synod %q:\n%s", args, out)
		}
		for i, l := range lines[1:] {
			if !strings.HasPrefix(l, "m") || !strings.Contains(l, "kB") {
				t.Fatalf("status row %d: %q", i, l)
			}
		}
	}
	t.Setenv("ETCDCTL_ENDPOINTS", eps[2])
	if out = mustRun(t, "status"); !strings.Contains(out, eps[2]) {
		t.Fatalf("status with $ETCDCTL_ENDPOINTS:\n%s", out)
	}

	// snapshot save: FILE appears whole, FILE.part does not linger.
	snap := filepath.Join(t.TempDir(), "snap.db")
	out = mustRun(t, "snapshot", "save", snap, "--cluster-file", clusterFile)
	st, err := os.Stat(snap)
	if err != nil || st.Size() == 0 || !strings.Contains(out, "revision") {
		t.Fatalf("snapshot save: %v, %q", err, out)
	}
	if _, err := os.Stat(snap + ".part"); !os.IsNotExist(err) {
		t.Fatalf("snapshot left %s.part: %v", snap, err)
	}

	// member add (learner) prints the env lines and the master command line.
	// etcd refuses reconfiguration ("unhealthy cluster") until every member
	// has been connected for 5s, so a fresh cluster needs a few tries.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var code int
		var errOut string
		code, out, errOut = runCLI(t, "member", "add", "m4", "--peer-urls", "http://127.0.0.1:9", "--learner",
			"--client-urls", "http://127.0.0.1:8", "--endpoints", eps[0])
		if code == 0 {
			break
		}
		if !strings.Contains(errOut, "unhealthy cluster") || time.Now().After(deadline) {
			t.Fatalf("member add: exit %d: %s", code, errOut)
		}
		waitFor(500 * time.Millisecond)
	}
	for _, want := range []string{`ETCD_NAME="m4"`, `ETCD_INITIAL_CLUSTER_STATE="existing"`,
		`ETCD_INITIAL_ADVERTISE_PEER_URLS="http://127.0.0.1:9"`, "m4=http://127.0.0.1:9", "m1=http://127.0.0.1:",
		"synod master --name m4", "--initial-cluster-state existing", "--listen-client-urls http://127.0.0.1:8"} {
		if !strings.Contains(out, want) {
			t.Fatalf("member add output lacks %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`Learner ([0-9a-f]+) added`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("member add printed no ID:\n%s", out)
	}
	id := m[1]
	if out = mustRun(t, "member", "list", "--endpoints", eps[0]); !regexp.MustCompile(id + `\s+\(unstarted\)\s+http://127.0.0.1:9\s+true`).MatchString(out) {
		t.Fatalf("member list after add:\n%s", out)
	}
	// An unstarted learner is not in sync: etcd refuses, synod exits 1.
	if code, _, errOut := runCLI(t, "member", "promote", id, "--endpoints", eps[0]); code != 1 || errOut == "" {
		t.Fatalf("promote of an unstarted learner: exit %d %q, want 1", code, errOut)
	}
	mustRun(t, "member", "remove", id, "--endpoints", eps[0])
	if out = mustRun(t, "member", "list", "--endpoints", eps[0]); strings.Contains(out, id) {
		t.Fatalf("member list after remove:\n%s", out)
	}
}

func TestClientCommandsUnreachable(t *testing.T) {
	for _, args := range [][]string{
		{"status"}, {"member", "list"}, {"snapshot", "save", filepath.Join(t.TempDir(), "s.db")},
	} {
		args = append(args, "--endpoints", "127.0.0.1:1", "--dial-timeout", "300ms", "--command-timeout", "1s")
		code, _, errOut := runCLI(t, args...)
		if code != 1 || !strings.Contains(errOut, "127.0.0.1:1") {
			t.Errorf("synod %q against a closed port: exit %d, %q; want 1", args, code, errOut)
		}
	}
	if code, _, _ := runCLI(t, "status", "--cluster-file", filepath.Join(t.TempDir(), "missing.json")); code != 1 {
		t.Errorf("status with a missing cluster file: exit %d, want 1", code)
	}
}
