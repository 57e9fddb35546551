package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"synod/internal/launch"
	"synod/internal/pki"
)

// failoverConfig is a rest.Config whose connections go to the first master
// that accepts them, starting with the one used last: a minimal client-side
// balancer (the node issue brings the real one), so a client survives the
// death of the master it talks to.
func failoverConfig(t *testing.T, c *launch.Cluster, first int, current *atomic.Int32) *rest.Config {
	t.Helper()
	ca, err := pki.EnsureCA(filepath.Join(c.Dir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueClient("admin", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, m := range c.Masters() {
		u, _ := url.Parse(m.APIURL)
		addrs = append(addrs, u.Host)
	}
	current.Store(int32(first))
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var lastErr error
		for i := 0; i < len(addrs); i++ {
			idx := (int(current.Load()) + i) % len(addrs)
			d := net.Dialer{Timeout: time.Second}
			conn, err := d.DialContext(ctx, network, addrs[idx])
			if err == nil {
				current.Store(int32(idx))
				return conn, nil
			}
			lastErr = err
		}
		return nil, lastErr
	}
	return &rest.Config{Host: "https://127.0.0.1:443", Dial: dial, QPS: -1,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM(), CertData: certPEM, KeyData: keyPEM}}
}

type seenEvent struct {
	typ   string
	name  string
	rv    int64
	value string
}

// A client-go SharedInformerFactory with default settings sees every add,
// update and delete, in order, while another client writes, across the kill
// of the master it is connected to.
func TestInformerAcrossMasterKill(t *testing.T) {
	c := startAPICluster(t, 3)
	var current atomic.Int32
	cfg := failoverConfig(t, c, 0, &current)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []seenEvent
	record := func(typ string, obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				cm, _ = d.Obj.(*corev1.ConfigMap)
				typ = "delete-unknown"
			}
		}
		if cm == nil {
			return
		}
		rv, _ := strconv.ParseInt(cm.ResourceVersion, 10, 64)
		mu.Lock()
		seen = append(seen, seenEvent{typ, cm.Name, rv, cm.Data["v"]})
		mu.Unlock()
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().ConfigMaps().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { record("add", o) },
		UpdateFunc: func(_, o any) { record("update", o) },
		DeleteFunc: func(o any) { record("delete", o) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	defer func() {
		cancel() // informers stop on this; Shutdown then waits for them
		factory.Shutdown()
	}()
	syncCtx, syncCancel := context.WithTimeout(ctx, 20*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatal("informer never synced")
	}

	// The writer talks to the last master, which is not killed.
	var wcur atomic.Int32
	writer, err := kubernetes.NewForConfig(failoverConfig(t, c, 2, &wcur))
	if err != nil {
		t.Fatal(err)
	}
	cms := writer.CoreV1().ConfigMaps("default")
	const objects = 20
	expect := map[string][]string{}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	for i := 0; i < objects; i++ {
		if i == objects/2 {
			// Kill the master the informer is connected to, mid-stream.
			victim := int(current.Load())
			if victim == 2 {
				t.Fatal("informer ended up on the writer's master; the test would be void")
			}
			if err := c.Kill(victim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			t.Logf("killed master %d (the informer's) after %d objects", victim, i)
		}
		name := fmt.Sprintf("inf-%02d", i)
		// A write that fails while a master dies has an unknown outcome:
		// settle it by reading before trying again, so nothing is doubled.
		settle(t, wctx, "create "+name, func() error {
			_, err := cms.Create(wctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
			return err
		}, func() bool {
			cm, err := cms.Get(wctx, name, metav1.GetOptions{})
			return err == nil && cm.Data["v"] == "1"
		})
		for v := 2; v <= 3; v++ {
			want := strconv.Itoa(v)
			settle(t, wctx, "update "+name, func() error {
				cm, err := cms.Get(wctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				cm.Data["v"] = want
				_, err = cms.Update(wctx, cm, metav1.UpdateOptions{})
				return err
			}, func() bool {
				cm, err := cms.Get(wctx, name, metav1.GetOptions{})
				return err == nil && cm.Data["v"] == want
			})
		}
		expect[name] = []string{"add:1", "update:2", "update:3"}
		if i%3 == 0 {
			settle(t, wctx, "delete "+name, func() error {
				return cms.Delete(wctx, name, metav1.DeleteOptions{})
			}, func() bool {
				_, err := cms.Get(wctx, name, metav1.GetOptions{})
				return apierrors.IsNotFound(err)
			})
			expect[name] = append(expect[name], "delete:3")
		}
	}
	// Wait until the informer has seen the last write.
	last := fmt.Sprintf("inf-%02d", objects-1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, e := range seen {
			if e.name == last && e.value == "3" {
				n++
			}
		}
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("informer never caught up after the master kill")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	got := map[string][]string{}
	lastRV := map[string]int64{}
	for _, e := range seen {
		if e.rv < lastRV[e.name] {
			t.Fatalf("%s: event at resourceVersion %d after one at %d: out of order", e.name, e.rv, lastRV[e.name])
		}
		lastRV[e.name] = e.rv
		got[e.name] = append(got[e.name], e.typ+":"+e.value)
	}
	for name, w := range expect {
		if fmt.Sprint(got[name]) != fmt.Sprint(w) {
			t.Errorf("%s: informer saw %v, want %v", name, got[name], w)
		}
	}
	t.Logf("informer saw %d events for %d objects across the kill; now on master %d", len(seen), objects, current.Load())
}

// settle runs write until done() reports its effect, re-checking after every
// failure (the write may have happened anyway) and giving up at ctx's end.
func settle(t *testing.T, ctx context.Context, what string, write func() error, done func() bool) {
	t.Helper()
	for {
		err := write()
		if err == nil || done() {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v (retrying)", what, err)
		time.Sleep(100 * time.Millisecond)
	}
}
