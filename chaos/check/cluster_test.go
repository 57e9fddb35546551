package check_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"synod/chaos/check"
	"synod/chaos/workload"
	"synod/internal/launch"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// Short leader-election timings so that the components elect within the
// test (the flags of `synod master`).
var fastLeases = []string{"--leader-elect-lease-duration", "3s", "--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "250ms"}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func masters(c *testcluster.Cluster) []check.MasterState {
	var out []check.MasterState
	for _, m := range c.Launch.Masters() {
		out = append(out, check.MasterState{Name: m.Name, Endpoint: m.ClientURL, LogPath: m.LogFile})
	}
	return out
}

// runWorkload runs the workload for d against c, with faults (if not nil)
// running meanwhile, and returns the checks' results.
func runWorkload(t *testing.T, c *testcluster.Cluster, cfg workload.Config, d time.Duration, components bool, faults func() []check.Fault) []check.Result {
	t.Helper()
	for _, m := range c.Launch.Masters() {
		cfg.EtcdEndpoints = append(cfg.EtcdEndpoints, m.ClientURL)
		if cfg.Kubeconfig != "" {
			cfg.KubeServers = append(cfg.KubeServers, m.APIURL)
		}
	}
	cfg.Logger = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), d+90*time.Second)
	defer cancel()
	w, err := workload.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(d)
	var timeline []check.Fault
	if faults != nil {
		timeline = faults()
	}
	time.Sleep(time.Until(end)) // the workload's running time, not a wait for a condition
	s := w.Stats()
	h := w.Stop()
	t.Logf("workload: %d etcd ops (%d ok, %d failed reads, %d unknown writes), %d kube ops (%d ok), %d watch events, %d resumes",
		s.Ops, s.OK, s.Failed, s.Unknown, s.KubeOps, s.KubeOK, len(h.Watches), len(h.WatchResumes))
	report := t.TempDir()
	if err := h.WriteDir(report); err != nil {
		t.Fatal(err)
	}
	rs := check.Run(ctx, check.Input{History: h, Masters: masters(c), ReportDir: report, Faults: timeline, RecoveryFrom: w.FirstWriteOKAfter,
		SchedulerLease: components, ControllerLease: components, LinearizabilityTimeout: 30 * time.Second})
	for _, r := range rs {
		t.Logf("%-40s pass=%v  %s", r.Name, r.Pass, r.Evidence)
	}
	if b, err := json.MarshalIndent(rs, "", " "); err == nil {
		os.WriteFile(filepath.Join(report, "checks.json"), b, 0o644)
	}
	return rs
}

// raftLeader returns the index of the master that leads raft, asking each
// member until one says it leads (bounded).
func raftLeader(t *testing.T, c *testcluster.Cluster) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for i, m := range c.Launch.Masters() {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, m.ClientURL)
			cancel()
			cli.Close()
			if err == nil && st.Leader == st.Header.MemberId {
				return i
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no raft leader within 15s")
	return -1
}

// killLeader SIGKILLs the raft leader 3s into the workload and starts it
// again 2s later: the fault timeline of one leader-kill.
func killLeader(t *testing.T, c *testcluster.Cluster) func() []check.Fault {
	return func() []check.Fault {
		time.Sleep(3 * time.Second) // let the workload run before the fault
		i := raftLeader(t, c)
		name := c.Launch.Masters()[i].Name
		f := check.Fault{Kind: "leader-kill", Target: name, Start: time.Now()}
		if err := c.Launch.Kill(i, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // the fault's hold
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := c.Launch.StartMaster(i)
			if err == nil {
				break
			}
			if !errors.Is(err, launch.ErrRunning) || time.Now().After(deadline) {
				t.Fatalf("restart %s: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond) // the reaper has not waited for it yet
		}
		f.End = time.Now()
		t.Logf("killed raft leader %s at %s, restarted at %s", name, f.Start.Format("15:04:05.000"), f.End.Format("15:04:05.000"))
		return []check.Fault{f}
	}
}

// A 3-master cluster under the workload (etcd and Kubernetes API clients,
// watchers) through one SIGKILL of the raft leader passes every check.
func TestWorkloadThroughLeaderKillPasses(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Masters: 3, Components: true, ExtraArgs: fastLeases})
	rs := runWorkload(t, c, workload.Config{Kubeconfig: c.Kubeconfig, Seed: 1}, 10*time.Second, true, killLeader(t, c))
	want := []string{"linearizability", "revisions", "no-lost-writes", "convergence", "watches",
		"single-active-kube-scheduler", "single-active-kube-controller-manager", "kube-objects", "recovery-writes", "recovery-kube-scheduler"}
	if len(rs) != len(want) {
		t.Errorf("%d results, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		if i < len(want) && r.Name != want[i] {
			t.Errorf("result %d is %s, want %s", i, r.Name, want[i])
		}
		if !r.Pass {
			t.Errorf("%s failed: %s", r.Name, r.Evidence)
		}
	}
}

// The test-only broken build (--unsafe-chaos-bug=stale-reads: linearizable
// reads served from the member's local state) is caught without any fault:
// the member clients of followers read values older than writes already
// acknowledged through the leader.
func TestStaleReadsBugIsCaught(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Masters: 3, ExtraArgs: []string{"--unsafe-chaos-bug=stale-reads"}})
	rs := runWorkload(t, c, workload.Config{Seed: 2, Keys: 2, Rate: 400, Watchers: 1}, 8*time.Second, false, nil)
	failed := map[string]check.Result{}
	for _, r := range rs {
		if !r.Pass {
			failed[r.Name] = r
		}
	}
	lin, ok := failed["linearizability"]
	if !ok {
		t.Fatalf("the linearizability check passed a store that serves stale reads")
	}
	if !strings.Contains(lin.Evidence, "NOT linearizable") {
		t.Errorf("linearizability evidence: %s", lin.Evidence)
	}
	d, ok := lin.Details.(check.LinearizabilityDetails)
	if !ok || d.Visualization == "" {
		t.Errorf("no visualization written: %+v", lin.Details)
	} else if _, err := os.Stat(d.Visualization); err != nil {
		t.Errorf("visualization: %v", err)
	}
	// The bug only makes reads stale: the store itself stays correct.
	for _, name := range []string{"no-lost-writes", "convergence"} {
		if r, bad := failed[name]; bad {
			t.Errorf("%s failed on a store whose writes are correct: %s", name, r.Evidence)
		}
	}
}

// The test-only broken build --unsafe-chaos-bug=ack-before-commit (the
// leader acknowledges a Put before it is in the log, and proposes it a
// second later) loses acknowledged writes when the leader is SIGKILLed: the
// no-lost-writes check names them.
func TestAckBeforeCommitBugLosesWrites(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Masters: 3, ExtraArgs: []string{"--unsafe-chaos-bug=ack-before-commit"}})
	rs := runWorkload(t, c, workload.Config{Seed: 3, Watchers: -1}, 7*time.Second, false, killLeader(t, c))
	for _, r := range rs {
		if r.Name != "no-lost-writes" {
			continue
		}
		if r.Pass {
			t.Fatalf("no-lost-writes passed a store that acknowledges writes before committing them: %s", r.Evidence)
		}
		if !strings.Contains(r.Evidence, "LOST") || !strings.Contains(r.Evidence, "was never applied") {
			t.Errorf("no-lost-writes evidence does not name a lost write: %s", r.Evidence)
		}
		return
	}
	t.Fatal("no no-lost-writes result")
}
