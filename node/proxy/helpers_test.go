package proxy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"synod/internal/testcluster"
	"synod/node/iptbackend"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// requireNetNS checks what the kernel tests need: root and the tools.
// In CI a missing piece fails the test; elsewhere it skips.
func requireNetNS(t *testing.T) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	}
	for _, tool := range []string{"ip", "iptables-legacy", "iptables-nft", "iptables-legacy-restore", "iptables-nft-restore"} {
		if _, err := exec.LookPath(tool); err != nil && missing == "" {
			missing = tool + " (apt packages iptables, iproute2)"
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs %s", missing)
	}
	t.Skipf("needs %s", missing)
}

var netnsSeq atomic.Int64

// newNetNS creates a network namespace that is deleted when the test
// ends, with lo up, and returns its path.
func newNetNS(t *testing.T) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("synod-proxy-%d-%d", os.Getpid(), netnsSeq.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name, "/run/netns/" + name
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if err := runCmd(args...); err != nil {
		t.Fatal(err)
	}
}

func runCmd(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// countingRunner is the real runner, counting iptables-restore calls.
type countingRunner struct {
	Runner
	restores atomic.Int64
}

// iptables is the runner's iptables binary (its backend's), for tests
// that change rules behind the proxier's back.
func (c *countingRunner) iptables() string {
	return c.Runner.(*ExecRunner).Tools().IPTables
}

func (c *countingRunner) Restore(ctx context.Context, data []byte) error {
	c.restores.Add(1)
	return c.Runner.Restore(ctx, data)
}

func newRunner(t *testing.T, netns string) *countingRunner {
	t.Helper()
	r, _, err := NewAutoRunner(context.Background(), netns, testBackend())
	if err != nil {
		t.Fatal(err)
	}
	return &countingRunner{Runner: r}
}

func save(t *testing.T, r Runner, table string) string {
	t.Helper()
	out, err := r.Save(context.Background(), table)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// eventually polls cond every 10ms until it holds or timeout passes, and
// returns how long it took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// syncs is the number of successful syncs, read from the metrics.
func syncs(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "kubeproxy_sync_proxy_rules_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// testBackend is the iptables backend the package tests use:
// SYNOD_TEST_IPTABLES_BACKEND (nft or legacy) or detection.
func testBackend() iptbackend.Backend {
	if b, err := iptbackend.Parse(os.Getenv("SYNOD_TEST_IPTABLES_BACKEND")); err == nil {
		return b
	}
	return iptbackend.Auto
}
