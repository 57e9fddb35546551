package apilb_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"synod/node/apilb"
	"synod/node/gossip"
)

// testLogWriter sends log lines to t.Log until the test's cleanups ran.
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
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// backend is a real HTTPS server on loopback that answers /readyz (while
// ready) and, on any other path, its name.
type backend struct {
	name  string
	srv   *httptest.Server
	ready atomic.Bool
	hits  atomic.Int64
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	return newBackendOn(t, name, "127.0.0.1:0")
}

// newBackendOn starts a backend on addr (to bring one back where it was).
func newBackendOn(t *testing.T, name, addr string) *backend {
	t.Helper()
	var ln net.Listener
	var err error
	// The old listener's port can take a moment to be free again.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name}
	b.ready.Store(true)
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if !b.ready.Load() {
				http.Error(w, "[-]etcd failed", http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "ok")
			return
		}
		b.hits.Add(1)
		io.WriteString(w, b.name)
	}))
	b.srv.Listener.Close()
	b.srv.Listener = ln
	b.srv.EnableHTTP2 = true
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// client returns an HTTPS client for the balancer that trusts the
// backends' certificate (httptest's, which covers 127.0.0.1). keepAlive
// false makes every request a new connection.
func client(b *backend, keepAlive bool) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(b.srv.Certificate())
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: !keepAlive, ForceAttemptHTTP2: true,
	}}
}

func get(c *http.Client, lb *apilb.Balancer) (string, error) {
	resp, err := c.Get(lb.URL() + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func startLB(t *testing.T, cfg apilb.Config) *apilb.Balancer {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 200 * time.Millisecond
	}
	cfg.Logger = testLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	lb, err := apilb.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-lb.Done():
		case <-time.After(5 * time.Second):
			t.Error("balancer did not stop")
		}
	})
	return lb
}

func eventually(t *testing.T, d time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	begin := time.Now()
	var err error
	for time.Since(begin) < d {
		if err = cond(); err == nil {
			return time.Since(begin)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, d, err)
	return 0
}

func status(lb *apilb.Balancer, addr string) apilb.ServerStatus {
	for _, s := range lb.Servers() {
		if s.Address == addr {
			return s
		}
	}
	return apilb.ServerStatus{}
}

func healthy(lb *apilb.Balancer, addr string, want bool) func() error {
	return func() error {
		if s := status(lb, addr); s.Healthy != want || !s.Checked {
			return fmt.Errorf("%s: %+v", addr, s)
		}
		return nil
	}
}

func TestSpreadsNewConnectionsOverServers(t *testing.T) {
	bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")}
	reg := prometheus.NewRegistry()
	lb := startLB(t, apilb.Config{Servers: []string{"https://" + bs[0].addr(), bs[1].addr(), "https://" + bs[2].addr()}, Registerer: reg})
	c := client(bs[0], false)
	for range 30 {
		if _, err := get(c, lb); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bs {
		if n := b.hits.Load(); n != 10 {
			t.Errorf("%s got %d of 30 connections, want 10 (round-robin)", b.name, n)
		}
		if got := (metric(t, reg, "synod_apilb_connections_total", b.addr())); got != 10 {
			t.Errorf("connections_total{%s} = %v", b.addr(), got)
		}
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name, server string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == server {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{server=%q}", name, server)
	return 0
}

func TestDeadServerSkippedAtOnceAndUsedAgainWhenBack(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	reg := prometheus.NewRegistry()
	lb := startLB(t, apilb.Config{Servers: []string{a.addr(), b.addr()}, Registerer: reg})
	c := client(a, false)
	eventually(t, 2*time.Second, "checked", healthy(lb, a.addr(), true))

	addrA := a.addr()
	a.srv.Close() // the process dies: its port refuses, its connections end
	killed := time.Now()
	// Every new connection from now on works: a refused dial moves on.
	for range 20 {
		name, err := get(c, lb)
		if err != nil || name != "b" {
			t.Fatalf("after a died: %q, %v", name, err)
		}
	}
	took := eventually(t, 2*time.Second, "a unhealthy", healthy(lb, addrA, false))
	t.Logf("a marked unhealthy %v after it died (%v in this poll)", time.Since(killed), took)
	if s := status(lb, addrA); s.Active != 0 {
		t.Errorf("a still has %d proxied connections", s.Active)
	}
	if got := (metric(t, reg, "synod_apilb_server_healthy", addrA)); got != 0 {
		t.Errorf("server_healthy{a} = %v", got)
	}

	// a comes back on its address: used again once a check passes.
	a2 := newBackendOn(t, "a2", addrA)
	back := time.Now()
	eventually(t, 2*time.Second, "a healthy again", healthy(lb, addrA, true))
	t.Logf("a healthy again %v after it came back", time.Since(back))
	for range 10 {
		if _, err := get(c, lb); err != nil {
			t.Fatal(err)
		}
	}
	if a2.hits.Load() != 5 {
		t.Errorf("a came back but got %d of 10 new connections, want 5", a2.hits.Load())
	}
}

func TestNotReadyServerLosesItsConnections(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	lb := startLB(t, apilb.Config{Servers: []string{a.addr(), b.addr()}})
	eventually(t, 2*time.Second, "checked", healthy(lb, a.addr(), true))
	// A raw TLS connection through the balancer, pinned to whichever
	// server the balancer picked.
	pool := x509.NewCertPool()
	pool.AddCert(a.srv.Certificate())
	conn, err := tls.Dial("tcp", lb.Addr(), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pinned := a
	if backendOf(t, conn) == "b" {
		pinned = b
	}
	buf := make([]byte, 4096)

	// Its /readyz starts failing (a master that lost its quorum): the
	// connection is closed so its client reconnects elsewhere.
	pinned.ready.Store(false)
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("connection to the unready server still open")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("connection closed after %v, want about a check interval", d)
	}
	other := map[*backend]string{a: "b", b: "a"}[pinned]
	c := client(a, false)
	for range 6 {
		if name, err := get(c, lb); err != nil || name != other {
			t.Fatalf("new connection went to %q (%v), want %s", name, err, other)
		}
	}

	// When nothing is ready, connections are still made (the checks may
	// be stale) and kept.
	a.ready.Store(false)
	b.ready.Store(false)
	eventually(t, 2*time.Second, "all unhealthy", func() error {
		for _, s := range lb.Servers() {
			if s.Healthy {
				return fmt.Errorf("%+v", s)
			}
		}
		return nil
	})
	if _, err := get(c, lb); err != nil {
		t.Errorf("with no healthy server: %v", err)
	}
}

// backendOf asks which backend a connection through the balancer reached
// (the connection stays open: HTTP/1.1 keep-alive).
func backendOf(t *testing.T, conn net.Conn) string {
	t.Helper()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestFollowsGossip uses real gossip members as the source: masters that
// announce the backends' URLs, and a worker member the balancer reads.
func TestFollowsGossip(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	fast := func(c *memberlist.Config) {
		c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult, c.GossipInterval = 100*time.Millisecond, 50*time.Millisecond, 2, 20*time.Millisecond
	}
	member := func(name, api string, join ...string) *gossip.Pool {
		role := gossip.RoleMaster
		if api == "" {
			role = gossip.RoleWorker
		}
		ctx, cancel := context.WithCancel(context.Background())
		p, err := gossip.Start(ctx, gossip.Config{Name: name, BindAddr: "127.0.0.1", BindPort: gossip.RandomPort, Role: role,
			APIServerURL: api, Join: join, Tune: fast, Logger: testLogger(t).With("member", name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Shutdown(); cancel(); <-p.Done() })
		return p
	}
	ma := member("ma", "https://"+a.addr())
	mb := member("mb", "https://"+b.addr(), ma.LocalAddr())
	w := member("w", "", mb.LocalAddr())
	// The worker was started with master a's address only.
	lb := startLB(t, apilb.Config{Servers: []string{"https://" + a.addr()}, Source: w})
	eventually(t, 5*time.Second, "b learned from gossip", healthy(lb, b.addr(), true))
	c := client(a, false)
	seen := map[string]bool{}
	for range 4 {
		name, err := get(c, lb)
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("connections went to %v, want both", seen)
	}

	// A long-lived connection to b; then master b leaves the pool: it is
	// dropped from the balancer and its connection closed.
	pool := x509.NewCertPool()
	pool.AddCert(a.srv.Certificate())
	var conn *tls.Conn
	for range 4 {
		c, err := tls.Dial("tcp", lb.Addr(), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if backendOf(t, c) == "b" {
			conn = c
			break
		}
		c.Close()
	}
	if conn == nil {
		t.Fatal("no connection landed on b")
	}
	defer conn.Close()
	mb.Leave(time.Second)
	eventually(t, 5*time.Second, "b dropped", func() error {
		if s := status(lb, b.addr()); s.Address != "" {
			return fmt.Errorf("still balancing over b: %+v", s)
		}
		return nil
	})
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("connection to the dropped server: %v, want closed", err)
	}

	// Master a (static) dies as well: gossip drops it, the static list
	// keeps it, and an empty gossip view does not empty the balancer.
	ma.Shutdown()
	eventually(t, 5*time.Second, "no master in gossip", func() error {
		if s := w.APIServers(); len(s) > 0 {
			return fmt.Errorf("%v", s)
		}
		return nil
	})
	lb.SetServers(nil)
	if s := lb.Servers(); len(s) != 1 || s[0].Address != a.addr() || !s[0].Static {
		t.Errorf("servers = %+v, want the static a only", s)
	}
}

func TestStopsWithContext(t *testing.T) {
	a := newBackend(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	lb, err := apilb.Start(ctx, apilb.Config{ListenAddr: "127.0.0.1:0", Servers: []string{a.addr()}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(a.srv.Certificate())
	conn, err := tls.Dial("tcp", lb.Addr(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cancel()
	select {
	case <-lb.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not stopped")
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("proxied connection after stop: %v, want closed", err)
	}
	if c, err := net.DialTimeout("tcp", lb.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("still listening after stop")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg    apilb.Config
		errHas string
	}{
		{apilb.Config{}, "no servers"},
		{apilb.Config{Servers: []string{"http://127.0.0.1:6443"}}, "https"},
		{apilb.Config{Servers: []string{"127.0.0.1"}}, "HOST:PORT"},
		{apilb.Config{Servers: []string{"127.0.0.1:1"}, ListenAddr: "256.0.0.1:1"}, "listen"},
	} {
		_, err := apilb.Start(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("Start(%+v) = %v, want an error with %q", tc.cfg, err, tc.errHas)
		}
	}
}
