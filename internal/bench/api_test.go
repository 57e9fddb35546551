package bench

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildSynod builds the synod binary into a temporary dir.
func buildSynod(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "synod")
	out, err := exec.Command("go", "build", "-o", bin, "synod").CombinedOutput()
	if err != nil {
		t.Fatalf("build synod: %v\n%s", err, out)
	}
	return bin
}

// TestRunAPI runs the pod-create workload for about a second at 2 clients,
// then 30 creates with --ops, each against a 1-master cluster.
func TestRunAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a synod cluster")
	}
	bin := buildSynod(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var progress strings.Builder
	rep, err := RunAPI(ctx, APIOptions{
		Clients:       []int{2},
		Duration:      time.Second,
		Masters:       1,
		LaunchOptions: LaunchOptions{Dir: t.TempDir(), SynodBinary: bin, Progress: &progress},
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("RunAPI: %v", err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("got %d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if r.Phase != PhaseCreatePod || r.Clients != 2 || r.Creates < 2 || r.CreatesPerSec <= 0 ||
		r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 || r.Elapsed < time.Second {
		t.Errorf("implausible result %+v", r)
	}
	if r.Errors != 0 {
		t.Errorf("%d errors, first %s", r.Errors, r.FirstErr)
	}
	if r.WatchEvents != r.Creates || r.WatchMissed != 0 || r.WatchP50 <= 0 || r.WatchP99 < r.WatchP50 || r.WatchMax < r.WatchP99 {
		t.Errorf("watch: %d events for %d creates, %d missed, p50 %s p99 %s max %s",
			r.WatchEvents, r.Creates, r.WatchMissed, r.WatchP50, r.WatchP99, r.WatchMax)
	}
	md := rep.Markdown()
	t.Logf("\n%s", md)
	for _, want := range []string{"| create-pod |", "| watch p99 |", "at 16 clients: not measured"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Results []map[string]any
		Goal    struct{ Measured bool }
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != 1 || back.Goal.Measured {
		t.Errorf("JSON: %v\n%s", err, b)
	}

	// --ops: exactly that many creates.
	rep, err = RunAPI(ctx, APIOptions{Clients: []int{3}, Ops: 30, Masters: 1, LaunchOptions: LaunchOptions{Dir: t.TempDir(), SynodBinary: bin}})
	if err != nil {
		t.Fatalf("RunAPI with Ops: %v", err)
	}
	if r := rep.Results[0]; r.Creates+r.Errors != 30 || r.WatchEvents != r.Creates {
		t.Errorf("with Ops 30: %+v", r)
	}
}

func TestAPIGoal(t *testing.T) {
	for _, tc := range []struct {
		res  []APIResult
		want string
	}{
		{nil, "not measured"},
		{[]APIResult{{Clients: 1, CreatesPerSec: 9000, P99: time.Millisecond}}, "not measured"},
		{[]APIResult{{Clients: 16, CreatesPerSec: 1500, P99: 49 * time.Millisecond}}, ": met."},
		{[]APIResult{{Clients: 16, CreatesPerSec: 1499, P99: 10 * time.Millisecond}}, "NOT met"},
		{[]APIResult{{Clients: 16, CreatesPerSec: 5000, P99: 50 * time.Millisecond}}, "NOT met"},
	} {
		rep := &APIReport{Masters: 3, Duration: time.Second, Results: tc.res}
		line := rep.GoalLine()
		if !strings.HasPrefix(line, "Goal: >= 1,500 creates/s and p99 < 50 ms at 16 clients") || !strings.Contains(line, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.res, line, tc.want)
		}
	}
}

func TestWatchTracker(t *testing.T) {
	tr := newWatchTracker()
	t0 := time.Now()
	tr.started("a", t0)
	tr.started("b", t0)
	tr.started("c", t0)
	tr.failed("c")
	tr.seen("a", t0.Add(3*time.Millisecond))
	tr.seen("x", t0) // not ours
	tr.seen("a", t0.Add(time.Second))
	delays, missed := tr.drain(context.Background(), 20*time.Millisecond)
	if len(delays) != 1 || delays[0] != 3*time.Millisecond || missed != 1 {
		t.Errorf("drain = %v, %d; want [3ms], 1", delays, missed)
	}
	if delays, missed = tr.drain(context.Background(), time.Second); len(delays) != 0 || missed != 0 {
		t.Errorf("drain after reset = %v, %d", delays, missed)
	}
}
