package gossip_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"synod/node/gossip"
)

// fast shortens memberlist's LAN timers so that failure detection takes a
// fraction of a second on loopback; the protocol is the same.
func fast(c *memberlist.Config) {
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 50 * time.Millisecond
	c.SuspicionMult = 2
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = time.Second
	c.TCPTimeout = 500 * time.Millisecond
}

// testLogWriter sends log lines to t.Log until the test's cleanups have
// run: memberlist goroutines may still log a line after Shutdown, and
// t.Log after the test panics.
type testLogWriter struct {
	t    testing.TB
	mu   *sync.Mutex
	done *bool
}

func (w testLogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := testLogWriter{t: t, mu: new(sync.Mutex), done: new(bool)}
	t.Cleanup(func() { // registered first, so it runs after the members stopped
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start starts a member on a random loopback port; it is shut down (not
// left) when the test ends unless the test stopped it.
func start(t *testing.T, cfg gossip.Config) *gossip.Pool {
	t.Helper()
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1"
	}
	if cfg.BindPort == 0 {
		cfg.BindPort = gossip.RandomPort
	}
	if cfg.Role == "" {
		cfg.Role = gossip.RoleWorker
	}
	if cfg.Tune == nil {
		cfg.Tune = fast
	}
	if cfg.JoinBackoffMin == 0 {
		cfg.JoinBackoffMin, cfg.JoinBackoffMax = 50*time.Millisecond, 200*time.Millisecond
	}
	log := testLogger(t)
	cfg.Logger = log.With("member", cfg.Name)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := gossip.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		p.Shutdown()
		cancel()
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("%s: background work did not end", cfg.Name)
		}
	})
	return p
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	begin := time.Now()
	var err error
	for time.Since(begin) < d {
		if err = cond(); err == nil {
			return time.Since(begin)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, d, err)
	return 0
}

func states(p *gossip.Pool) map[string]gossip.State {
	s := map[string]gossip.State{}
	for _, m := range p.Members() {
		s[m.Name] = m.State
	}
	return s
}

func wantStates(p *gossip.Pool, want map[string]gossip.State) error {
	got := states(p)
	for name, st := range want {
		if got[name] != st {
			return fmt.Errorf("%s sees %v, want %s %s", p.Name(), got, name, st)
		}
	}
	return nil
}

func allAlive(names ...string) map[string]gossip.State {
	m := map[string]gossip.State{}
	for _, n := range names {
		m[n] = gossip.StateAlive
	}
	return m
}

func TestJoinThroughAnyMemberAndMetadata(t *testing.T) {
	m1 := start(t, gossip.Config{Name: "m1", Role: gossip.RoleMaster, APIServerURL: "https://127.0.0.1:16443", Version: "v0.5"})
	m2 := start(t, gossip.Config{Name: "m2", Role: gossip.RoleMaster, APIServerURL: "https://127.0.0.1:16444", Version: "v0.5",
		Join: []string{m1.LocalAddr()}})
	// w1 joins through m2, w2 through w1: any member is a way in.
	w1 := start(t, gossip.Config{Name: "w1", NodeName: "worker-1", Version: "v0.5", Join: []string{m2.LocalAddr()}})
	w2 := start(t, gossip.Config{Name: "w2", NodeName: "worker-2", Version: "v0.5", Join: []string{w1.LocalAddr()}})
	pools := []*gossip.Pool{m1, m2, w1, w2}
	for _, p := range pools {
		eventually(t, 5*time.Second, "full view", func() error { return wantStates(p, allAlive("m1", "m2", "w1", "w2")) })
	}
	for _, p := range pools {
		select {
		case <-p.Joined():
		default:
			t.Errorf("%s: Joined not closed", p.Name())
		}
		if got, want := p.APIServers(), []string{"https://127.0.0.1:16443", "https://127.0.0.1:16444"}; !slices.Equal(got, want) {
			t.Errorf("%s: APIServers = %v, want %v", p.Name(), got, want)
		}
		for _, m := range p.Members() {
			if m.Addr != "127.0.0.1" || m.Port == 0 || m.Version != "v0.5" {
				t.Errorf("%s sees %+v", p.Name(), m)
			}
			switch m.Name {
			case "m1", "m2":
				if m.Role != gossip.RoleMaster || m.APIServerURL == "" {
					t.Errorf("%s sees %+v", p.Name(), m)
				}
			case "w1", "w2":
				if m.Role != gossip.RoleWorker || m.NodeName != "worker-"+m.Name[1:] || m.APIServerURL != "" {
					t.Errorf("%s sees %+v", p.Name(), m)
				}
			}
		}
	}
}

func TestFailureDetectedAndLeaveSeen(t *testing.T) {
	m1 := start(t, gossip.Config{Name: "m1", Role: gossip.RoleMaster, APIServerURL: "https://127.0.0.1:1"})
	m2 := start(t, gossip.Config{Name: "m2", Role: gossip.RoleMaster, APIServerURL: "https://127.0.0.1:2", Join: []string{m1.LocalAddr()}})
	w1 := start(t, gossip.Config{Name: "w1", Join: []string{m1.LocalAddr()}})
	w2 := start(t, gossip.Config{Name: "w2", Join: []string{m2.LocalAddr()}})
	for _, p := range []*gossip.Pool{m1, m2, w1, w2} {
		eventually(t, 5*time.Second, "full view", func() error { return wantStates(p, allAlive("m1", "m2", "w1", "w2")) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := w1.Watch(ctx)
	for len(changes) > 0 {
		<-changes
	}

	// A crash: no leave message, the others must notice by probing.
	if err := m1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 5*time.Second, "m1 dead", func() error {
		for _, p := range []*gossip.Pool{m2, w1, w2} {
			if err := wantStates(p, map[string]gossip.State{"m1": gossip.StateDead}); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("failure of m1 detected by all in %v (probe 100ms, suspicion multiplier 2)", took)
	select {
	case <-changes:
	default:
		t.Error("Watch did not signal the failure")
	}
	if got := w1.APIServers(); !slices.Equal(got, []string{"https://127.0.0.1:2"}) {
		t.Errorf("APIServers after m1 died = %v", got)
	}

	// A graceful leave: "left", not "dead".
	if err := w2.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "w2 left", func() error {
		return wantStates(w1, map[string]gossip.State{"w2": gossip.StateLeft, "m2": gossip.StateAlive})
	})

	// A member that joins now still learns who died and who left.
	late := start(t, gossip.Config{Name: "late", Role: gossip.RoleCLI, Join: []string{w1.LocalAddr()}})
	eventually(t, 5*time.Second, "late view", func() error {
		return wantStates(late, map[string]gossip.State{"m1": gossip.StateDead, "w2": gossip.StateLeft,
			"m2": gossip.StateAlive, "w1": gossip.StateAlive})
	})
	for _, m := range late.Members() {
		if m.Name == "late" {
			t.Errorf("a CLI member lists itself: %+v", m)
		}
	}

	// The crashed master comes back under its name and address and is
	// alive again.
	_, port, _ := net.SplitHostPort(m1.LocalAddr())
	m1b := start(t, gossip.Config{Name: "m1", Role: gossip.RoleMaster, APIServerURL: "https://127.0.0.1:1", BindPort: atoi(t, port),
		Join: []string{w1.LocalAddr()}})
	eventually(t, 5*time.Second, "m1 back", func() error { return wantStates(m2, allAlive("m1", "m2", "w1")) })
	if got := m2.APIServers(); len(got) != 2 {
		t.Errorf("APIServers after m1 came back = %v", got)
	}
	_ = m1b
}

func TestContextEndLeaves(t *testing.T) {
	a := start(t, gossip.Config{Name: "a"})
	ctx, cancel := context.WithCancel(context.Background())
	b, err := gossip.Start(ctx, gossip.Config{Name: "b", Role: gossip.RoleWorker, BindAddr: "127.0.0.1", BindPort: gossip.RandomPort,
		Tune: fast, Join: []string{a.LocalAddr()}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b alive", func() error { return wantStates(a, allAlive("a", "b")) })
	cancel()
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("b did not stop with its context")
	}
	eventually(t, 5*time.Second, "b left", func() error { return wantStates(a, map[string]gossip.State{"b": gossip.StateLeft}) })
}

func TestJoinRetriesUntilSeedIsUp(t *testing.T) {
	port := freePort(t)
	seedAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	w := start(t, gossip.Config{Name: "w", Join: []string{seedAddr}})
	time.Sleep(300 * time.Millisecond) // let a few attempts fail
	select {
	case <-w.Joined():
		t.Fatal("joined with no seed up")
	default:
	}
	start(t, gossip.Config{Name: "seed", BindPort: port})
	select {
	case <-w.Joined():
	case <-time.After(5 * time.Second):
		t.Fatal("did not join once the seed came up")
	}
	eventually(t, 5*time.Second, "seed seen", func() error { return wantStates(w, allAlive("w", "seed")) })
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// freePort finds a port free for both TCP and UDP on loopback.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func key(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func TestEncryptionKeepsOthersOut(t *testing.T) {
	a := start(t, gossip.Config{Name: "a", Key: key(1)})
	b := start(t, gossip.Config{Name: "b", Key: key(1), Join: []string{a.LocalAddr()}})
	eventually(t, 5*time.Second, "b joined", func() error { return wantStates(a, allAlive("a", "b")) })

	wrong := start(t, gossip.Config{Name: "wrong", Key: key(2), Join: []string{a.LocalAddr()}})
	plain := start(t, gossip.Config{Name: "plain", Join: []string{b.LocalAddr()}})
	short := start(t, gossip.Config{Name: "short", Key: key(1)[:16], Join: []string{b.LocalAddr()}})
	// Bounded wait for something that must not happen: several join
	// retries (50-200ms backoff) fail in this time.
	time.Sleep(time.Second)
	for _, p := range []*gossip.Pool{wrong, plain, short} {
		select {
		case <-p.Joined():
			t.Errorf("%s joined a pool with a different key", p.Name())
		default:
		}
	}
	for _, p := range []*gossip.Pool{a, b} {
		if got := states(p); len(got) != 2 {
			t.Errorf("%s sees outsiders: %v", p.Name(), got)
		}
	}
}

func TestKeyRotationKeepsMembersConnected(t *testing.T) {
	old, nw := key(1), key(100)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(old)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := start(t, gossip.Config{Name: "a", KeyFile: keyFile})
	b := start(t, gossip.Config{Name: "b", KeyFile: keyFile, Join: []string{a.LocalAddr()}})
	c := start(t, gossip.Config{Name: "c", KeyFile: keyFile, Join: []string{b.LocalAddr()}})
	pools := []*gossip.Pool{a, b, c}
	all := allAlive("a", "b", "c")
	check := func(step string) {
		t.Helper()
		for _, p := range pools {
			eventually(t, 5*time.Second, step, func() error { return wantStates(p, all) })
		}
	}
	check("before rotation")

	// Watch for any member going suspect or dead during the rotation.
	stop := make(chan struct{})
	flaps := make(chan string, 100)
	go func() {
		for {
			select {
			case <-stop:
				close(flaps)
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, p := range pools {
				for name, s := range states(p) {
					if s != gossip.StateAlive {
						flaps <- fmt.Sprintf("%s saw %s %s", p.Name(), name, s)
					}
				}
			}
		}
	}()
	step := func(name string, f func(p *gossip.Pool) error) {
		t.Helper()
		for _, p := range pools {
			if err := f(p); err != nil {
				t.Fatalf("%s on %s: %v", name, p.Name(), err)
			}
		}
		// Let the protocol run on the new keys for a few probe rounds.
		time.Sleep(500 * time.Millisecond)
		check(name)
	}
	step("install", func(p *gossip.Pool) error { return p.InstallKey(nw) })
	step("use", func(p *gossip.Pool) error { return p.UseKey(nw) })
	step("remove", func(p *gossip.Pool) error { return p.RemoveKey(old) })
	close(stop)
	for f := range flaps {
		t.Errorf("during rotation: %s", f)
	}
	for _, p := range pools {
		if ks := p.Keys(); len(ks) != 1 || string(ks[0]) != string(nw) {
			t.Errorf("%s keyring after rotation has %d keys", p.Name(), len(ks))
		}
	}

	// Only the new key gets in now; a member restarted mid-rotation with
	// a serf-style keyring file (new primary, old too) gets in as well.
	ring := filepath.Join(dir, "keyring.json")
	os.WriteFile(ring, []byte(fmt.Sprintf("[%q, %q]", base64.StdEncoding.EncodeToString(nw), base64.StdEncoding.EncodeToString(old))), 0o600)
	d := start(t, gossip.Config{Name: "d", KeyFile: ring, Join: []string{c.LocalAddr()}})
	stale := start(t, gossip.Config{Name: "stale", Key: old, Join: []string{c.LocalAddr()}})
	eventually(t, 5*time.Second, "d joined", func() error { return wantStates(a, allAlive("a", "b", "c", "d")) })
	time.Sleep(500 * time.Millisecond)
	select {
	case <-stale.Joined():
		t.Error("a member with only the removed key joined")
	default:
	}
	_ = d
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gen, err := gossip.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k16 := base64.StdEncoding.EncodeToString(key(3)[:16])
	for _, tc := range []struct {
		name, content string
		keys          int
		errHas        string
	}{
		{"generated", gen + "\n", 1, ""},
		{"aes128", "  " + k16 + "  ", 1, ""},
		{"ring", fmt.Sprintf("[%q,%q]", gen, k16), 2, ""},
		{"empty", "\n", 0, "no key"},
		{"emptyring", "[]", 0, "no key"},
		{"notbase64", "not base64!!", 0, "not base64"},
		{"short", base64.StdEncoding.EncodeToString([]byte("0123456789")), 0, "10 bytes, want 16, 24 or 32"},
		{"badjson", "[\"abc\"", 0, "JSON array"},
		{"badring", fmt.Sprintf("[%q,%q]", gen, "QUJD"), 0, "key 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := gossip.ReadKeyFile(write(tc.name, tc.content))
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.errHas)
				}
				return
			}
			if err != nil || len(keys) != tc.keys {
				t.Fatalf("keys = %d, err = %v", len(keys), err)
			}
		})
	}
	if _, err := gossip.ReadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing key file is not an error")
	}
	// Start reports a bad key file instead of running unencrypted.
	_, err = gossip.Start(context.Background(), gossip.Config{Name: "x", Role: gossip.RoleWorker, BindAddr: "127.0.0.1",
		BindPort: gossip.RandomPort, KeyFile: write("bad", "QUJD")})
	if err == nil || !strings.Contains(err.Error(), "gossip key file") {
		t.Errorf("Start with a bad key file: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg    gossip.Config
		errHas string
	}{
		{gossip.Config{Name: "x"}, "bad Role"},
		{gossip.Config{Name: "x", Role: gossip.RoleMaster}, "APIServerURL"},
		{gossip.Config{Name: "x", Role: gossip.RoleWorker, Key: []byte("short")}, "bad Key"},
		{gossip.Config{Name: "x", Role: gossip.RoleWorker, Key: key(1), KeyFile: "f"}, "exclusive"},
		{gossip.Config{Name: "x", Role: gossip.RoleWorker, BindPort: 70000}, "BindPort"},
		{gossip.Config{Name: "x", Role: gossip.RoleWorker, NodeName: strings.Repeat("n", 600)}, "metadata is"},
	} {
		_, err := gossip.Start(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("Start(%+v) = %v, want an error with %q", tc.cfg, err, tc.errHas)
		}
	}
}

func TestMetricsCountMembersByState(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := start(t, gossip.Config{Name: "a", Registerer: reg})
	b := start(t, gossip.Config{Name: "b", Join: []string{a.LocalAddr()}})
	eventually(t, 5*time.Second, "b alive", func() error { return wantStates(a, allAlive("a", "b")) })
	b.Shutdown()
	eventually(t, 5*time.Second, "metrics", func() error {
		got := gauges(t, reg, "synod_gossip_members")
		if got["alive"] != 1 || got["dead"] != 1 || got["left"] != 0 || got["suspect"] != 0 {
			return fmt.Errorf("synod_gossip_members = %v", got)
		}
		return nil
	})
}

func gauges(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			label := ""
			for _, l := range m.GetLabel() {
				label = l.GetValue()
			}
			out[label] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestCrashGoesSuspectThenDead(t *testing.T) {
	slowSuspicion := func(c *memberlist.Config) {
		fast(c)
		c.SuspicionMult = 6 // 600ms of suspicion with 2 members
	}
	a := start(t, gossip.Config{Name: "a", Tune: slowSuspicion})
	b := start(t, gossip.Config{Name: "b", Tune: slowSuspicion, Join: []string{a.LocalAddr()}})
	eventually(t, 5*time.Second, "b alive", func() error { return wantStates(a, allAlive("a", "b")) })
	b.Shutdown()
	var seen []gossip.State
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s := states(a)["b"]
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if s == gossip.StateDead {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Equal(seen, []gossip.State{gossip.StateAlive, gossip.StateSuspect, gossip.StateDead}) {
		t.Errorf("a saw b go %v, want alive, suspect, dead", seen)
	}
}

func TestViewSeesThePoolAndLeavesNoTrace(t *testing.T) {
	k := key(7)
	m1 := start(t, gossip.Config{Name: "m1", Role: gossip.RoleMaster, APIServerURL: "https://127.0.0.1:6443", Key: k})
	w1 := start(t, gossip.Config{Name: "w1", Key: k, Join: []string{m1.LocalAddr()}})
	w2 := start(t, gossip.Config{Name: "w2", Key: k, Join: []string{m1.LocalAddr()}})
	eventually(t, 5*time.Second, "pool", func() error { return wantStates(m1, allAlive("m1", "w1", "w2")) })
	w2.Shutdown()
	eventually(t, 5*time.Second, "w2 dead", func() error { return wantStates(w1, map[string]gossip.State{"w2": gossip.StateDead}) })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The first address answers nothing: the viewer asks every one.
	members, err := gossip.View(ctx, gossip.ViewConfig{Join: []string{fmt.Sprintf("127.0.0.1:%d", freePort(t)), w1.LocalAddr()},
		Key: k, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]gossip.State{}
	for _, m := range members {
		got[m.Name] = m.State
	}
	if want := map[string]gossip.State{"m1": gossip.StateAlive, "w1": gossip.StateAlive, "w2": gossip.StateDead}; !maps.Equal(got, want) {
		t.Errorf("View = %v, want %v", got, want)
	}
	// The viewer is gone from everyone's view, not listed as left.
	time.Sleep(300 * time.Millisecond)
	for _, p := range []*gossip.Pool{m1, w1} {
		if n := len(p.Members()); n != 3 {
			t.Errorf("%s lists %d members after the viewer left: %v", p.Name(), n, states(p))
		}
	}

	// Wrong key and nobody listening: errors, within the context's time.
	for name, cfg := range map[string]gossip.ViewConfig{
		"wrong key": {Join: []string{m1.LocalAddr()}, Key: key(8)},
		"no member": {Join: []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		begin := time.Now()
		_, err := gossip.View(ctx, cfg)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "no member reachable") || time.Since(begin) > 2*time.Second {
			t.Errorf("%s: View = %v after %v", name, err, time.Since(begin))
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// A member whose seed restarted with no one to join (the first master
// coming back) finds it again: members that see no one else retry their
// seeds and the members that died, every RejoinInterval.
func TestRejoinAfterEveryoneElseRestarted(t *testing.T) {
	seed := start(t, gossip.Config{Name: "seed"})
	_, port, _ := net.SplitHostPort(seed.LocalAddr())
	w := start(t, gossip.Config{Name: "w", Join: []string{seed.LocalAddr()}, RejoinInterval: 200 * time.Millisecond})
	eventually(t, 5*time.Second, "joined", func() error { return wantStates(w, allAlive("seed", "w")) })
	seed.Shutdown()
	eventually(t, 5*time.Second, "seed dead", func() error { return wantStates(w, map[string]gossip.State{"seed": gossip.StateDead}) })
	seed2 := start(t, gossip.Config{Name: "seed", BindPort: atoi(t, port)}) // joins no one
	took := eventually(t, 5*time.Second, "back together", func() error {
		if err := wantStates(seed2, allAlive("seed", "w")); err != nil {
			return err
		}
		return wantStates(w, allAlive("seed", "w"))
	})
	t.Logf("rejoined %v after the seed restarted", took)
}
