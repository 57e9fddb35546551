package bench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestRunScheduler runs the scheduler benchmark small: 20 nodes, 200 pods,
// one master.
func TestRunScheduler(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a synod cluster")
	}
	bin := buildSynod(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var progress strings.Builder
	rep, err := RunScheduler(ctx, SchedulerOptions{
		Nodes:         20,
		Pods:          200,
		Clients:       8,
		Timeout:       30 * time.Second,
		LaunchOptions: LaunchOptions{Dir: t.TempDir(), SynodBinary: bin, Progress: &progress},
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("RunScheduler: %v", err)
	}
	if rep.Bound != 200 || rep.PodsPerSec <= 0 || rep.FirstBind <= 0 || rep.Elapsed < rep.FirstBind || rep.Sync <= 0 || len(rep.Notes) != 0 {
		t.Errorf("implausible report %+v", rep)
	}
	md := rep.Markdown()
	for _, want := range []string{"| nodes |", "pods/s", "Goal: >= 1,000 pods/s"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	t.Logf("\n%s", md)
	js, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js, &back); err != nil || back["bound"] != float64(200) {
		t.Errorf("JSON %s: %v", js, err)
	}
}
