package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRunPods runs the worker benchmark small: 5 pods on one master and one
// worker, with real containerd and runc in a network namespace.
func TestRunPods(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a synod cluster with a worker")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (network namespaces, containerd)")
		}
		t.Skip("needs root")
	}
	for _, tool := range []string{"containerd", "runc", "ip", "nsenter", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	bin := buildSynod(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var progress strings.Builder
	rep, err := RunPods(ctx, PodsOptions{
		Pods:          5,
		Clients:       2,
		Timeout:       60 * time.Second,
		LaunchOptions: LaunchOptions{Dir: t.TempDir(), SynodBinary: bin, Progress: &progress},
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("RunPods: %v", err)
	}
	if rep.Running != 5 || len(rep.Startup) != 5 || rep.FirstRunning <= 0 || rep.Elapsed < rep.FirstRunning ||
		rep.PodsPerSec <= 0 || rep.NodesReady <= 0 || len(rep.Notes) != 0 {
		t.Errorf("implausible report %+v", rep)
	}
	for _, d := range rep.Startup {
		if d <= 0 || d > rep.Elapsed+time.Second {
			t.Errorf("implausible startup latency %s (all running after %s)", d, rep.Elapsed)
		}
	}
	md := rep.Markdown()
	for _, want := range []string{"| pods |", "p99", "Goal: p99 pod startup < 1 s"} {
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
	if err := json.Unmarshal(js, &back); err != nil || back["running"] != float64(5) {
		t.Errorf("JSON %s: %v", js, err)
	}
}

// TestStartupTracker pairs creates with running events in either order and
// ignores repeated running events.
func TestStartupTracker(t *testing.T) {
	tr := newStartupTracker(2)
	t0 := time.Now()
	tr.create("a", t0)
	tr.run("a", t0.Add(300*time.Millisecond))
	tr.run("a", t0.Add(900*time.Millisecond)) // a later event: ignored
	tr.run("b", t0.Add(500*time.Millisecond)) // before its create was recorded
	tr.create("b", t0.Add(100*time.Millisecond))
	select {
	case <-tr.all:
	default:
		t.Fatal("all not closed after 2 pods ran")
	}
	lat, first, last := tr.result()
	if len(lat) != 2 || lat[0] != 300*time.Millisecond || lat[1] != 400*time.Millisecond {
		t.Errorf("latencies %v", lat)
	}
	if !first.Equal(t0.Add(300*time.Millisecond)) || !last.Equal(t0.Add(500*time.Millisecond)) {
		t.Errorf("first %v last %v", first.Sub(t0), last.Sub(t0))
	}
}
