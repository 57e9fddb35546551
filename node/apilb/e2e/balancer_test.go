package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"synod/internal/testcluster"
	"synod/node/apilb"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

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
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestClientGoThroughBalancerSurvivesMasterKill runs a client-go client and
// an informer through the balancer, SIGKILLs the master its connection went
// to, and checks that requests and the watch carry on through the other
// masters, and that the master is used again once it is back.
func TestClientGoThroughBalancerSurvivesMasterKill(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Masters: 3})
	masters := c.Launch.Masters()
	var urls []string
	index := map[string]int{} // HOST:PORT -> master index
	for i, m := range masters {
		u, err := url.Parse(m.APIURL)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, m.APIURL)
		index[u.Host] = i
	}
	// The health checks verify the masters with the cluster CA (the
	// admin kubeconfig's), without a client certificate.
	tlsCfg, err := rest.TLSConfigFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	healthTLS := &tls.Config{RootCAs: tlsCfg.RootCAs}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lb, err := apilb.Start(ctx, apilb.Config{ListenAddr: "127.0.0.1:0", Servers: urls, HealthTLS: healthTLS, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-lb.Done() }()
	waitHealthy(t, lb, len(masters))

	cfg := rest.CopyConfig(c.Config)
	cfg.Host = lb.URL() // TLS to the master, end to end: its certificate includes 127.0.0.1
	cfg.Timeout = 5 * time.Second
	client := kubernetes.NewForConfigOrDie(cfg)

	// An informer through the balancer: its watch must come back after the kill.
	seen := make(chan string, 100)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().ConfigMaps().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) { seen <- obj.(*v1.ConfigMap).Name }})
	factory.Start(ctx.Done())
	defer func() { cancel(); factory.Shutdown() }() // Shutdown waits for the informers, which stop with ctx
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	create := func(name string) error {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		_, err := client.CoreV1().ConfigMaps("default").Create(rctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	}
	if err := create("before"); err != nil {
		t.Fatal(err)
	}
	waitSeen(t, seen, "before", 5*time.Second)

	// client-go multiplexes everything over one HTTP/2 connection: the
	// master it goes to is the one with a proxied connection.
	victim := -1
	for _, s := range lb.Servers() {
		if s.Active > 0 {
			victim = index[s.Address]
		}
	}
	if victim < 0 {
		t.Fatalf("no proxied connection: %+v", lb.Servers())
	}
	t.Logf("client-go is connected to master %d (%s); killing it", victim, masters[victim].APIURL)
	if err := c.Launch.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var lastErr, firstErr error
	failed := 0
	for i := 0; ; i++ {
		if lastErr = create(fmt.Sprintf("after-%d", i)); lastErr == nil {
			break
		}
		if failed++; firstErr == nil {
			firstErr = lastErr
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("no request through the balancer succeeded within 10s of the kill: %v", lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recovered := time.Since(killed)
	t.Logf("first successful write %v after SIGKILL (includes a raft election if it was the leader); %d failed before, the first: %v",
		recovered, failed, firstErr)
	if recovered > 3*time.Second {
		t.Errorf("requests resumed %v after the kill, want about a second", recovered)
	}
	// The watch: the informer sees a configmap made after the kill.
	if err := create("watched"); err != nil {
		t.Fatal(err)
	}
	watchBack := waitSeen(t, seen, "watched", 15*time.Second)
	t.Logf("informer saw an object created after the kill %v after the kill", time.Since(killed))
	_ = watchBack

	// The balancer marks it unhealthy by its next check or dial.
	victimAddr := hostOf(t, masters[victim].APIURL)
	for status(lb, victimAddr).Healthy {
		if time.Since(killed) > 3*time.Second {
			t.Fatalf("killed master still healthy: %+v", status(lb, victimAddr))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("killed master marked unhealthy %v after the kill", time.Since(killed))

	// The master comes back: new connections use it again.
	if err := c.Launch.StartMaster(victim); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for !status(lb, victimAddr).Healthy {
		if time.Now().After(deadline) {
			t.Fatalf("restarted master not healthy within 30s: %+v", status(lb, victimAddr))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("restarted master healthy in the balancer %v after its start", time.Since(back))
	before := status(lb, victimAddr).Connections
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: healthTLS, DisableKeepAlives: true}}
	for range 6 {
		resp, err := fresh.Get(lb.URL() + "/version")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := status(lb, victimAddr).Connections - before; got != 2 {
		t.Errorf("restarted master got %d of 6 new connections, want 2 (round-robin over 3)", got)
	}
	// And client-go still works.
	if err := create("end"); err != nil {
		t.Fatal(err)
	}
}

func hostOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Host
}

func status(lb *apilb.Balancer, addr string) apilb.ServerStatus {
	for _, s := range lb.Servers() {
		if s.Address == addr {
			return s
		}
	}
	return apilb.ServerStatus{}
}

func waitHealthy(t *testing.T, lb *apilb.Balancer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := 0
		for _, s := range lb.Servers() {
			if s.Checked && s.Healthy {
				ok++
			}
		}
		if ok == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all healthy: %+v", lb.Servers())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitSeen(t *testing.T, seen <-chan string, name string, d time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	timeout := time.After(d)
	for {
		select {
		case n := <-seen:
			if n == name {
				return time.Since(begin)
			}
		case <-timeout:
			t.Fatalf("informer did not see %q within %v", name, d)
		}
	}
}
