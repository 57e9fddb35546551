package chaos_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"synod/chaos"
	"synod/chaos/check"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

func TestScheduleIsAFunctionOfSeedAndFlags(t *testing.T) {
	kinds, err := chaos.ParseKinds("all")
	if err != nil {
		t.Fatal(err)
	}
	cfg := chaos.ScheduleConfig{Seed: 42, Masters: 5, Kinds: kinds, Interval: 5 * time.Second, Duration: 2 * time.Minute}
	a, b := chaos.Schedule(cfg), chaos.Schedule(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules:\n%s---\n%s", chaos.FormatSchedule(a), chaos.FormatSchedule(b))
	}
	if len(a) != 24 {
		t.Fatalf("2m at 5s intervals gave %d steps, want 24", len(a))
	}
	other := cfg
	other.Seed = 43
	if reflect.DeepEqual(a, chaos.Schedule(other)) {
		t.Fatal("seeds 42 and 43 gave the same schedule")
	}
	// The spelling of --faults does not matter, only the set.
	k1, _ := chaos.ParseKinds("pause,kill,partition")
	k2, _ := chaos.ParseKinds("kill, partition,pause,kill")
	c1, c2 := cfg, cfg
	c1.Kinds, c2.Kinds = k1, k2
	if !reflect.DeepEqual(chaos.Schedule(c1), chaos.Schedule(c2)) {
		t.Fatal("the same fault set spelled differently gave different schedules")
	}
	// A longer run starts with the shorter run's schedule.
	longer := cfg
	longer.Duration = 4 * time.Minute
	if l := chaos.Schedule(longer); !reflect.DeepEqual(l[:len(a)], a) {
		t.Fatal("a longer run does not replay the shorter one's schedule first")
	}

	lo, hi := cfg.HoldRange()
	seen := map[chaos.Kind]bool{}
	for i, s := range a {
		seen[s.Kind] = true
		if s.N != i+1 || s.At != time.Duration(i)*cfg.Interval {
			t.Errorf("step %d: N %d At %s", i, s.N, s.At)
		}
		if s.Hold < lo || s.Hold > hi {
			t.Errorf("step %s: hold outside [%s, %s]", s, lo, hi)
		}
		switch s.Kind {
		case chaos.KindMajorityKill:
			if len(s.Members) != 3 {
				t.Errorf("step %s: majority of 5 is 3, not %d", s, len(s.Members))
			}
		case chaos.KindSplit:
			if p := slices.Sorted(slices.Values(s.Members)); !reflect.DeepEqual(p, []int{0, 1, 2, 3, 4}) {
				t.Errorf("step %s: split order %v is not a permutation of the masters", s, s.Members)
			}
		case chaos.KindComponentKill:
			if s.Component != chaos.LeaseScheduler && s.Component != chaos.LeaseController {
				t.Errorf("step %s: component %q", s, s.Component)
			}
		}
		for _, m := range s.Members {
			if m < 0 || m >= cfg.Masters {
				t.Errorf("step %s: member %d out of range", s, m)
			}
		}
	}
	if len(seen) < 5 {
		t.Errorf("24 steps over 8 kinds used only %d kinds", len(seen))
	}
	cfg.Count = 7
	if n := len(chaos.Schedule(cfg)); n != 7 {
		t.Errorf("Count 7 gave %d steps", n)
	}
}

func TestParseKinds(t *testing.T) {
	if _, err := chaos.ParseKinds("kill,explode"); err == nil || !strings.Contains(err.Error(), `"explode"`) {
		t.Errorf("unknown kind: err %v", err)
	}
	if _, err := chaos.ParseKinds(" , "); err == nil {
		t.Error("empty list accepted")
	}
	all, err := chaos.ParseKinds("all")
	if err != nil || !reflect.DeepEqual(all, chaos.Kinds) {
		t.Errorf("all = %v, %v", all, err)
	}
}

func TestOptionsValidate(t *testing.T) {
	kinds, _ := chaos.ParseKinds("kill")
	for _, o := range []chaos.Options{
		{Binary: "x", Masters: 4, Kinds: kinds, Interval: time.Second, Count: 1},
		{Binary: "x", Masters: 3, Interval: time.Second, Count: 1},
		{Binary: "x", Masters: 3, Kinds: kinds, Interval: 10 * time.Millisecond, Count: 1},
		{Binary: "x", Masters: 3, Kinds: kinds, Interval: 5 * time.Second, Duration: time.Second},
	} {
		err := o.Validate()
		if _, ok := err.(*chaos.UsageError); !ok {
			t.Errorf("%+v: err %v, want a UsageError", o, err)
		}
	}
}

// requireMachine skips (fails in CI) unless the test can make namespaces,
// bridges and iptables rules.
func requireMachine(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"nsenter", "ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chaos tests need %v", missing)
	}
	t.Skipf("chaos tests need %v", missing)
}

// runChaos runs the harness with o, checks that it left nothing behind and
// returns the report.
func runChaos(t *testing.T, ctx context.Context, o chaos.Options) *chaos.Report {
	t.Helper()
	o.Binary = testcluster.Binary()
	o.ReportDir = filepath.Join(t.TempDir(), "report")
	o.Progress = testWriter{t}
	o.LockWait = 5 * time.Minute // another package's chaos test may be running
	rep, err := chaos.Run(ctx, o)
	if left := chaos.Leftovers(); len(left) > 0 {
		t.Errorf("left on the machine: %v", left)
	}
	if procs := processesUnder(o.ReportDir); len(procs) > 0 {
		t.Errorf("processes still running from the report dir: %v", procs)
	}
	if _, serr := os.Stat(filepath.Join(o.ReportDir, "data")); serr == nil {
		t.Errorf("data dir %s not removed", filepath.Join(o.ReportDir, "data"))
	}
	if rep != nil {
		var b strings.Builder
		rep.Summary(&b)
		t.Logf("summary:\n%s", b.String())
	}
	if err != nil {
		t.Fatalf("chaos run: %v", err)
	}
	for _, f := range []string{"faults.json", "checks.json", "summary.txt", "schedule.txt", "history/ops.json", "m1.log"} {
		if _, err := os.Stat(filepath.Join(o.ReportDir, f)); err != nil {
			t.Errorf("report: %v", err)
		}
	}
	return rep
}

// processesUnder lists processes whose command line mentions dir.
func processesUnder(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestShortRun is CI's chaos run: 3 masters and a worker with 2 pods, 20
// faults (kills of a random master and of the leader, pauses, partitions),
// every check must pass, the pods' containers must run on untouched.
func TestShortRun(t *testing.T) {
	requireMachine(t)
	kinds, _ := chaos.ParseKinds("kill,leader-kill,pause,partition")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	rep := runChaos(t, ctx, chaos.Options{Masters: 3, Kinds: kinds, Interval: 4 * time.Second, Count: 20, Seed: 1, Settle: 3 * time.Second,
		Workers: 1})
	if len(rep.Faults) != 20 {
		t.Errorf("%d faults injected, want 20", len(rep.Faults))
	}
	if rep.OpsChecked < 500 {
		t.Errorf("only %d operations checked", rep.OpsChecked)
	}
	for _, r := range rep.Results {
		if !r.Pass {
			t.Errorf("check %s failed: %s", r.Name, r.Evidence)
		}
	}
	if !rep.Pass() {
		t.Error("the report does not pass")
	}
	if !slices.ContainsFunc(rep.Results, func(r check.Result) bool { return r.Name == "worker-pods-keep-running" }) {
		t.Error("no worker-pods-keep-running check")
	}
	t.Logf("took %s", time.Since(start).Round(time.Second))
}

// TestBrokenBuildFails proves the checks can fail: masters built to serve
// linearizable reads from a member's local state (the hidden
// --unsafe-chaos-bug=stale-reads) answer stale reads while partitioned, and
// the linearizability or the lost-write check must say so.
func TestBrokenBuildFails(t *testing.T) {
	requireMachine(t)
	kinds, _ := chaos.ParseKinds("partition")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep := runChaos(t, ctx, chaos.Options{Masters: 3, Kinds: kinds, Interval: 5 * time.Second, Count: 5, Seed: 1, Settle: 2 * time.Second,
		NoKube: true, MasterArgs: []string{"--unsafe-chaos-bug=stale-reads"}})
	caught := false
	for _, r := range rep.Results {
		if (r.Name == "linearizability" || r.Name == "no-lost-writes") && !r.Pass {
			caught = true
			t.Logf("caught by %s: %s", r.Name, r.Evidence)
		}
	}
	if !caught {
		t.Fatalf("stale reads went unnoticed: %v", rep.Results)
	}
	if rep.Pass() {
		t.Fatal("the report of a broken build passes")
	}
	if _, err := os.Stat(filepath.Join(rep.Dir, "checks.json")); err != nil {
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
