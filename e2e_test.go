package main

// End-to-end tests: the real synod binary as separate processes, driven by
// Debian's etcdctl and etcd's Go client, killed with real signals.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"synod/internal/launch"
	"synod/internal/testcluster"
)

var synodBinary string

func TestMain(m *testing.M) {
	if p := os.Getenv(testcluster.BinaryEnv); p != "" {
		// `make test` builds the binary once for every package.
		synodBinary = p
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "synod-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	synodBinary = filepath.Join(dir, "synod")
	out, err := exec.Command("go", "build", "-o", synodBinary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build synod: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool finds a command, failing in CI and skipping elsewhere.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (run `make deps`)", name)
		}
		t.Skipf("%s is not installed (run `make deps`)", name)
	}
	return p
}

func startCluster(t *testing.T, masters int) *launch.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := launch.Start(ctx, launch.Options{Binary: synodBinary, Masters: masters, Dir: t.TempDir(), StopTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("start %d masters: %v", masters, err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Logf("stop cluster: %v", err)
		}
	})
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("cluster not ready: %v", err)
	}
	return c
}

// etcdctl runs Debian's etcdctl against endpoints and returns its stdout.
func etcdctl(t *testing.T, endpoints []string, stdin string, args ...string) (string, error) {
	t.Helper()
	bin := requireTool(t, "etcdctl")
	cmd := exec.Command(bin, append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--command-timeout=10s"}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("etcdctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func mustEtcdctl(t *testing.T, endpoints []string, args ...string) string {
	t.Helper()
	out, err := etcdctl(t, endpoints, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEtcdctlAgainstCluster(t *testing.T) {
	requireTool(t, "etcdctl")
	for _, n := range []int{1, 3, 5, 7} {
		t.Run(fmt.Sprintf("masters=%d", n), func(t *testing.T) { checkEtcdctl(t, startCluster(t, n)) })
	}
}

func checkEtcdctl(t *testing.T, c *launch.Cluster) {
	all := c.Endpoints()
	first, last := all[:1], all[len(all)-1:]

	// endpoint status: one leader, one term.
	var statuses []struct {
		Endpoint string
		Status   struct {
			Header struct {
				MemberID uint64 `json:"member_id"`
				RaftTerm uint64 `json:"raft_term"`
			}
			Leader  uint64
			Version string
		}
	}
	if err := json.Unmarshal([]byte(mustEtcdctl(t, all, "endpoint", "status", "-w", "json")), &statuses); err != nil {
		t.Fatal(err)
	}
	leaders := map[uint64]bool{}
	terms := map[uint64]bool{}
	isLeader := 0
	for _, s := range statuses {
		leaders[s.Status.Leader] = true
		terms[s.Status.Header.RaftTerm] = true
		if s.Status.Leader == s.Status.Header.MemberID {
			isLeader++
		}
	}
	if len(statuses) != len(all) || len(leaders) != 1 || len(terms) != 1 || isLeader != 1 {
		t.Fatalf("endpoint status: %+v", statuses)
	}
	if table := mustEtcdctl(t, all, "endpoint", "status", "-w", "table"); strings.Count(table, " true |") != 1 {
		t.Fatalf("status table does not show exactly one leader:\n%s", table)
	}
	if out := mustEtcdctl(t, all, "member", "list"); strings.Count(out, "started") != len(all) {
		t.Fatalf("member list:\n%s", out)
	}
	// etcdctl 3.4 prints health results on stderr.
	health := exec.Command(requireTool(t, "etcdctl"), "--endpoints="+strings.Join(all, ","), "endpoint", "health")
	health.Env = append(os.Environ(), "ETCDCTL_API=3")
	if out, err := health.CombinedOutput(); err != nil || strings.Count(string(out), "is healthy") != len(all) {
		t.Fatalf("endpoint health: %v\n%s", err, out)
	}

	// put on one endpoint, get on another.
	mustEtcdctl(t, first, "put", "foo", "bar")
	if out := mustEtcdctl(t, last, "get", "foo"); out != "foo\nbar\n" {
		t.Fatalf("get foo on another endpoint = %q", out)
	}
	mustEtcdctl(t, first, "put", "foo", "baz")
	mustEtcdctl(t, first, "put", "dir/a", "1")
	mustEtcdctl(t, first, "put", "dir/b", "2")
	if out := mustEtcdctl(t, last, "get", "", "--prefix", "--keys-only"); !strings.Contains(out, "dir/a") || !strings.Contains(out, "foo") {
		t.Fatalf("get --prefix --keys-only:\n%s", out)
	}
	var got struct {
		Header struct{ Revision int64 }
		Kvs    []struct {
			ModRevision int64 `json:"mod_revision"`
		}
	}
	json.Unmarshal([]byte(mustEtcdctl(t, last, "get", "foo", "-w", "json")), &got)
	if len(got.Kvs) != 1 {
		t.Fatalf("get foo json: %+v", got)
	}
	fooRev := got.Kvs[0].ModRevision
	if out := mustEtcdctl(t, last, "get", "foo", fmt.Sprintf("--rev=%d", fooRev-1)); out != "foo\nbar\n" {
		t.Fatalf("get --rev=%d = %q", fooRev-1, out)
	}

	// txn from stdin and "interactive" (prompts answered on stdin).
	txn := "value(\"foo\") = \"baz\"\n\nput txnkey yes\n\nput txnkey no\n\n"
	out, err := etcdctl(t, last, txn, "txn")
	if err != nil || !strings.HasPrefix(out, "SUCCESS") {
		t.Fatalf("txn: %q %v", out, err)
	}
	out, err = etcdctl(t, first, "mod(\"txnkey\") = \"0\"\n\n\nput other 1\n\n", "txn", "-i")
	if err != nil || !strings.Contains(out, "FAILURE") {
		t.Fatalf("txn -i: %q %v", out, err)
	}
	if out := mustEtcdctl(t, first, "get", "txnkey", "--print-value-only"); out != "yes\n" {
		t.Fatalf("txn result = %q", out)
	}

	// watch --rev=1 replays the history; watch --prefix sees a live put.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	wcmd := exec.CommandContext(ctx, requireTool(t, "etcdctl"), "--endpoints="+last[0], "watch", "foo", "--rev=1")
	wcmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	wout, _ := wcmd.StdoutPipe()
	if err := wcmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	tmp := make([]byte, 256)
	for !strings.Contains(string(buf), "baz") {
		n, err := wout.Read(tmp)
		if err != nil {
			t.Fatalf("watch --rev=1 output %q: %v", buf, err)
		}
		buf = append(buf, tmp[:n]...)
	}
	wcmd.Process.Kill()
	wcmd.Wait()
	if !strings.Contains(string(buf), "PUT\nfoo\nbar\nPUT\nfoo\nbaz") {
		t.Fatalf("watch --rev=1 = %q", buf)
	}
	pcmd := exec.CommandContext(ctx, requireTool(t, "etcdctl"), "--endpoints="+last[0], "watch", "--prefix", "live/")
	pcmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	lines := startUntil(t, pcmd, "live/x")
	// The watch is live once etcdctl has connected; keep putting until it reports.
	var seen string
	for seen == "" {
		mustEtcdctl(t, first, "put", "live/x", "1")
		select {
		case seen = <-lines:
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("watch --prefix saw nothing")
		}
	}
	pcmd.Process.Kill()
	pcmd.Wait()

	// del --prefix
	if out := mustEtcdctl(t, first, "del", "dir/", "--prefix"); out != "2\n" {
		t.Fatalf("del --prefix = %q", out)
	}

	// lease grant + put --lease: the key disappears on every member.
	out = mustEtcdctl(t, first, "lease", "grant", "3")
	var leaseID string
	fmt.Sscanf(out, "lease %s granted", &leaseID)
	mustEtcdctl(t, first, "put", "--lease="+leaseID, "ephemeral", "v")
	if out := mustEtcdctl(t, last, "get", "ephemeral", "--print-value-only"); out != "v\n" {
		t.Fatalf("leased key = %q", out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, ep := range all {
		for {
			if out := mustEtcdctl(t, []string{ep}, "get", "ephemeral", "--consistency=s"); out == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("leased key still on %s after its TTL", ep)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// lease keep-alive keeps a key alive past its TTL.
	out = mustEtcdctl(t, first, "lease", "grant", "2")
	fmt.Sscanf(out, "lease %s granted", &leaseID)
	mustEtcdctl(t, first, "put", "--lease="+leaseID, "kept", "v")
	kctx, kcancel := context.WithTimeout(context.Background(), 4*time.Second)
	ka := exec.CommandContext(kctx, requireTool(t, "etcdctl"), "--endpoints="+last[0], "lease", "keep-alive", leaseID)
	ka.Env = append(os.Environ(), "ETCDCTL_API=3")
	kaOut, _ := ka.Output()
	kcancel()
	if !strings.Contains(string(kaOut), "keepalived with TTL(2)") {
		t.Fatalf("lease keep-alive output %q", kaOut)
	}
	if out := mustEtcdctl(t, first, "get", "kept", "--print-value-only"); out != "v\n" {
		t.Fatalf("key under keep-alive is gone after 4 s with a 2 s TTL")
	}

	// compaction, then a read of a compacted revision fails with etcd's message.
	json.Unmarshal([]byte(mustEtcdctl(t, first, "get", "foo", "-w", "json")), &got)
	mustEtcdctl(t, first, "compaction", fmt.Sprint(got.Header.Revision))
	_, err = etcdctl(t, last, "", "get", "foo", "--rev=2")
	if err == nil || !strings.Contains(err.Error(), "mvcc: required revision has been compacted") {
		t.Fatalf("get of a compacted revision: %v", err)
	}

	// snapshot save, accepted by etcdctl 3.4's snapshot status.
	snap := filepath.Join(t.TempDir(), "snap.db")
	mustEtcdctl(t, first, "snapshot", "save", snap)
	var st struct {
		Revision int64
		TotalKey int `json:"totalKey"`
	}
	if err := json.Unmarshal([]byte(mustEtcdctl(t, nil, "snapshot", "status", snap, "-w", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Revision == 0 || st.TotalKey == 0 {
		t.Fatalf("snapshot status: %+v", st)
	}
}

// Every acknowledged write survives SIGKILL of every master at once.
func TestDurabilityKillAllMasters(t *testing.T) {
	c := startCluster(t, 3)
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var mu sync.Mutex
	acked := map[string]string{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k, v := fmt.Sprintf("dur/%d/%05d", w, i), fmt.Sprint(i)
				rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := cli.Put(rctx, k, v)
				rcancel()
				if err == nil {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				}
			}
		}(w)
	}
	// Kill while writes are in flight, once a good number are acknowledged.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged in 20 s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range c.Masters() {
		if err := c.Kill(i, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	mu.Lock()
	want := acked
	mu.Unlock()
	for i := range c.Masters() {
		waitExited(t, c, i)
		if err := c.StartMaster(i); err != nil {
			t.Fatal(err)
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	if err := c.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	for _, ep := range c.Endpoints() {
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		g, err := one.Get(rctx, "dur/", clientv3.WithPrefix())
		one.Close()
		if err != nil {
			t.Fatalf("get after restart on %s: %v", ep, err)
		}
		have := map[string]string{}
		for _, kv := range g.Kvs {
			have[string(kv.Key)] = string(kv.Value)
		}
		var lost []string
		for k, v := range want {
			if have[k] != v {
				lost = append(lost, k)
			}
		}
		sort.Strings(lost)
		if len(lost) > 0 {
			t.Fatalf("%s lost %d of %d acknowledged writes, e.g. %v", ep, len(lost), len(want), lost[:min(5, len(lost))])
		}
	}
	t.Logf("all %d acknowledged writes present on every master after SIGKILL of all", len(want))
}

func waitExited(t *testing.T, c *launch.Cluster, i int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Masters()[i].Running {
		if time.Now().After(deadline) {
			t.Fatalf("master %d still running after SIGKILL", i)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Under a steady write load, SIGKILL the leader and measure how long writes
// fail. Goal < 2 s; the test asserts < 5 s.
func TestFailoverAfterLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader := -1
	for i, ep := range c.Endpoints() {
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		st, err := one.Status(ctx, ep)
		one.Close()
		if err == nil && st.Leader == st.Header.MemberId {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader found")
	}
	var survivors []string
	for i, ep := range c.Endpoints() {
		if i != leader {
			survivors = append(survivors, ep)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: survivors, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var mu sync.Mutex
	var successes []time.Time
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				rctx, rcancel := context.WithTimeout(wctx, time.Second)
				_, err := cli.Put(rctx, fmt.Sprintf("fo/%d", w), fmt.Sprint(i))
				rcancel()
				if err == nil {
					mu.Lock()
					successes = append(successes, time.Now())
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(time.Second) // steady state before the fault
	killed := time.Now()
	if err := c.Kill(leader, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Measure the largest gap between consecutive acknowledgements around the kill.
	// Keep writing for a while after the kill so the gap is measured.
	time.Sleep(4 * time.Second)
	wcancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	gap := time.Duration(0)
	prev := killed
	for _, s := range successes {
		if s.Before(killed) {
			continue
		}
		if d := s.Sub(prev); d > gap {
			gap = d
		}
		prev = s
	}
	after := 0
	for _, s := range successes {
		if s.After(killed.Add(gap)) {
			after++
		}
	}
	if after == 0 {
		t.Fatalf("no write succeeded after killing the leader")
	}
	// The longest stretch without any acknowledged write, from the kill on,
	// is the time writes were unavailable.
	fmt.Printf("failover: writes unavailable for %s after SIGKILL of the leader (%d writes acknowledged after recovery)\n", gap.Round(time.Millisecond), after)
	if gap > 5*time.Second {
		t.Fatalf("writes failed for %s after killing the leader (want < 5 s)", gap)
	}
}

// SIGTERM on the leader hands leadership over before the process exits, so
// a new leader exists at once rather than after an election timeout.
func TestSIGTERMHandsLeadershipOver(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status := func(ep string) (*clientv3.StatusResponse, error) {
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, err
		}
		defer one.Close()
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		defer rcancel()
		return one.Status(rctx, ep)
	}
	leader := -1
	var oldLeaderID uint64
	for i, ep := range c.Endpoints() {
		if st, err := status(ep); err == nil && st.Leader == st.Header.MemberId {
			leader, oldLeaderID = i, st.Leader
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	if err := c.Kill(leader, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExited(t, c, leader)
	if exit := c.Masters()[leader].LastExit; exit != "" && !strings.Contains(exit, "exit status 0") {
		t.Fatalf("leader exited with %q after SIGTERM, want a clean exit", exit)
	}
	stopped := time.Now()
	other := c.Endpoints()[(leader+1)%3]
	for {
		st, err := status(other)
		if err == nil && st.Leader != 0 && st.Leader != oldLeaderID {
			break
		}
		if time.Since(stopped) > 5*time.Second {
			t.Fatalf("no new leader 5 s after the old one stopped (last status %v, %v)", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("new leader seen %s after the old leader exited", time.Since(stopped).Round(time.Millisecond))
	log, _ := os.ReadFile(c.Masters()[leader].LogFile)
	if !strings.Contains(string(log), "handed leadership over") {
		t.Fatalf("the leader's log does not show a leadership handover:\n%s", log)
	}
}

// startUntil starts cmd and returns a channel that receives its stdout once
// that contains marker (or the output ends). The caller stops cmd.
func startUntil(t *testing.T, cmd *exec.Cmd, marker string) <-chan string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		acc := ""
		for {
			n, err := out.Read(buf)
			acc += string(buf[:n])
			if strings.Contains(acc, marker) || err != nil {
				ch <- acc
				return
			}
		}
	}()
	return ch
}
