package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100 ms
	}
	for _, tc := range []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2), 50, 1 * time.Millisecond},
		{ms(1, 2, 3), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{hundred, 50, 50 * time.Millisecond},
		{hundred, 99, 99 * time.Millisecond},
		{hundred, 100, 100 * time.Millisecond},
		{hundred, 0.5, 1 * time.Millisecond},
	} {
		if got := Percentile(tc.samples, tc.p); got != tc.want {
			t.Errorf("Percentile(%d samples, %v) = %v, want %v", len(tc.samples), tc.p, got, tc.want)
		}
	}
	// 1000 samples: p99 is the 990th, not the 991st (0.99*1000 must not
	// round up past an exact rank).
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i + 1)
	}
	if got := Percentile(thousand, 99); got != 990 {
		t.Errorf("p99 of 1..1000 = %v, want 990", int64(got))
	}
}

func TestRatios(t *testing.T) {
	res := []Result{
		{Target: TargetSynod, Phase: PhasePut, Clients: 1, OpsPerSec: 450, P99: 4 * time.Millisecond},
		{Target: TargetSynod, Phase: PhasePut, Clients: 16, OpsPerSec: 3000, P99: 10 * time.Millisecond},
		{Target: TargetEtcd, Phase: PhasePut, Clients: 1, OpsPerSec: 900, P99: 2 * time.Millisecond},
		{Target: TargetEtcd, Phase: PhaseGetSerializable, Clients: 1, OpsPerSec: 5000, P99: time.Millisecond},
	}
	got := Ratios(res)
	if len(got) != 1 {
		t.Fatalf("Ratios = %+v, want exactly the put/1 pair", got)
	}
	r := got[0]
	if r.Phase != PhasePut || r.Clients != 1 || math.Abs(r.Throughput-0.5) > 1e-9 || math.Abs(r.P99-2) > 1e-9 {
		t.Errorf("Ratios[0] = %+v, want put/1 throughput 0.5 p99 2", r)
	}
	if ratio(1, 0) != 0 {
		t.Errorf("ratio(1, 0) = %v, want 0", ratio(1, 0))
	}

	rep := &Report{Masters: 3, Keys: 10, ValueSize: 256, Duration: time.Second, NumCPU: 2, Results: res}
	md := rep.Markdown()
	for _, want := range []string{
		"| phase ", "| ops/s |", "0.50×", "2.00×", "| put ", "4.00 ms",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	// Grouped: the etcd put/1 row directly follows the synod put/1 row.
	lines := strings.Split(md, "\n")
	for i, l := range lines {
		if strings.Contains(l, "| put ") && strings.Contains(l, "| synod ") && strings.Contains(l, "|       1 |") {
			if i+1 >= len(lines) || !strings.Contains(lines[i+1], "| etcd ") {
				t.Errorf("etcd row does not follow synod row:\n%s", md)
			}
		}
	}
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("JSON does not parse: %v\n%s", err, b)
	}
	if back["synod_over_etcd"] == nil || len(back["results"].([]any)) != 4 {
		t.Errorf("JSON lacks ratios or results:\n%s", b)
	}
}

const etcdBinary = "/usr/bin/etcd"

// TestRunAgainstEtcd runs the whole workload for about a second against one
// etcd member started here, through Options.Endpoints.
func TestRunAgainstEtcd(t *testing.T) {
	if _, err := os.Stat(etcdBinary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required with CI=true: %v", etcdBinary, err)
		}
		t.Skipf("%s not installed", etcdBinary)
	}
	ep := startEtcd(t)

	var progress strings.Builder
	rep, err := Run(context.Background(), Options{
		Endpoints: []string{ep},
		Targets:   []string{TargetEtcd},
		Clients:   []int{1, 4},
		Keys:      100,
		Duration:  150 * time.Millisecond,
		Progress:  &progress,
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Results) != 6 {
		t.Fatalf("got %d results, want 6 (3 phases × 2 levels)", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Target != TargetEtcd || r.Ops == 0 || r.OpsPerSec <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 {
			t.Errorf("implausible result %+v", r)
		}
		if r.Errors != 0 {
			t.Errorf("%s/%d: %d errors, first %s", r.Phase, r.Clients, r.Errors, r.FirstErr)
		}
	}
	t.Logf("\n%s", rep.Markdown())

	// --ops: exactly that many requests per phase.
	rep, err = Run(context.Background(), Options{
		Endpoints: []string{ep},
		Clients:   []int{3},
		Keys:      100,
		Ops:       50,
	})
	if err != nil {
		t.Fatalf("Run with Ops: %v", err)
	}
	for _, r := range rep.Results {
		if r.Ops+r.Errors != 50 || r.Target != TargetExternal {
			t.Errorf("with Ops 50: %+v", r)
		}
	}
}

// startEtcd starts a one-member etcd on free loopback ports and stops it by
// pid when the test ends. It returns the client URL once a Get succeeds.
func startEtcd(t *testing.T) string {
	t.Helper()
	ports := freePorts(t, 2)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	dir := t.TempDir()
	logf, err := os.Create(dir + "/etcd.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(etcdBinary,
		"--name", "b1", "--data-dir", dir+"/b1",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "b1="+peer, "--initial-cluster-state", "new")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()
		logf.Close()
	})

	o, _ := Options{Endpoints: []string{client}}.withDefaults()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		clis, err := dial(ctx, o, []string{client}, 1)
		cancel()
		if err == nil {
			clis[0].Close()
			return client
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(dir + "/etcd.log")
			t.Fatalf("etcd not ready: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
