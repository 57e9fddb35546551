package leader_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"synod/internal/testcluster"
	"synod/leader"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// term is one interval during which a candidate's work ran.
type term struct {
	who        string
	start, end time.Time
}

// journal records work intervals of several candidates.
type journal struct {
	mu    sync.Mutex
	terms []term
}

func (j *journal) work(who string) func(ctx context.Context) {
	return func(ctx context.Context) {
		start := time.Now()
		<-ctx.Done()
		j.mu.Lock()
		j.terms = append(j.terms, term{who, start, time.Now()})
		j.mu.Unlock()
	}
}

// checkNoOverlap fails if two terms overlap in time.
func (j *journal) checkNoOverlap(t *testing.T) {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, a := range j.terms {
		for _, b := range j.terms[i+1:] {
			if a.start.Before(b.end) && b.start.Before(a.end) {
				t.Errorf("two active at once: %s [%s, %s] and %s [%s, %s]", a.who, a.start.Format("15:04:05.000"), a.end.Format("15:04:05.000"),
					b.who, b.start.Format("15:04:05.000"), b.end.Format("15:04:05.000"))
			}
		}
	}
}

// blockable is an http.RoundTripper that can be cut off, like a master
// partitioned from its API.
type blockable struct {
	next    http.RoundTripper
	blocked atomic.Bool
}

func (b *blockable) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.blocked.Load() {
		return nil, errors.New("test: network cut")
	}
	return b.next.RoundTrip(r)
}

type candidate struct {
	el     *leader.Elector
	net    *blockable
	cancel context.CancelFunc
	done   chan struct{}
}

func startCandidate(t *testing.T, base *rest.Config, name string, j *journal) *candidate {
	t.Helper()
	cfg := rest.CopyConfig(base)
	net := &blockable{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { net.next = rt; return net })
	client := kubernetes.NewForConfigOrDie(cfg)
	el, err := leader.New(leader.Config{Client: client, Name: "test-component", Identity: name,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{el: el, net: net, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		el.Run(ctx, j.work(name))
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

// activeOnes returns the candidates whose work is running now.
func activeOnes(cs []*candidate) []*candidate {
	var out []*candidate
	for _, c := range cs {
		if c.el.Active() {
			out = append(out, c)
		}
	}
	return out
}

func waitOneActive(t *testing.T, cs []*candidate, timeout time.Duration) *candidate {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if a := activeOnes(cs); len(a) == 1 {
			return a[0]
		} else if len(a) > 1 {
			t.Fatalf("%d candidates active at once", len(a))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no candidate became active within %s", timeout)
	return nil
}

func TestElectionHandoverAndPartition(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	var j journal
	var cs []*candidate
	for i := range 3 {
		cs = append(cs, startCandidate(t, c.Config, fmt.Sprintf("cand-%d", i), &j))
	}
	first := waitOneActive(t, cs, 10*time.Second)
	lease, err := c.Client.CoordinationV1().Leases("kube-system").Get(context.Background(), "test-component", metav1.GetOptions{})
	if err != nil || *lease.Spec.HolderIdentity != first.el.Identity() {
		t.Fatalf("lease holder %v, active %s (err %v)", lease.Spec.HolderIdentity, first.el.Identity(), err)
	}

	// A graceful stop releases the lease: the next one takes over at its
	// next retry, well before the 2s lease would expire.
	stopped := time.Now()
	first.cancel()
	<-first.done
	rest := []*candidate{}
	for _, x := range cs {
		if x != first {
			rest = append(rest, x)
		}
	}
	second := waitOneActive(t, rest, 3*time.Second)
	if d := time.Since(stopped); d > time.Second {
		t.Errorf("takeover after release took %s; want about one retry period", d)
	}

	// Cut the leader off from the API: it must stop (and refuse writes)
	// before the other can acquire the lease.
	cut := time.Now()
	second.net.blocked.Store(true)
	var third *candidate
	for deadline := time.Now().Add(5 * time.Second); third == nil; {
		a := activeOnes(rest)
		if len(a) > 1 {
			t.Fatalf("%d candidates active at once", len(a))
		}
		if len(a) == 1 && a[0] != second {
			third = a[0]
		} else if time.Now().After(deadline) {
			t.Fatal("no takeover from the partitioned leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(cut); d < time.Second {
		t.Errorf("took over after %s, before the old lease could expire", d)
	}
	if second.el.Active() {
		t.Fatal("partitioned candidate reports active")
	}
	second.net.blocked.Store(false)
	// Healing must not produce a second active one.
	for range 50 {
		if a := activeOnes(cs); len(a) > 1 {
			t.Fatalf("%d active after heal", len(a))
		}
		time.Sleep(20 * time.Millisecond)
	}
	third.cancel()
	<-third.done
	waitOneActive(t, []*candidate{second}, 5*time.Second)
	j.checkNoOverlap(t)
}

func TestFenceRefusesWritesWithoutFreshLease(t *testing.T) {
	active := atomic.Bool{}
	rt := leader.Fence(active.Load)(roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	}))
	get, _ := http.NewRequest(http.MethodGet, "http://x/api", nil)
	post, _ := http.NewRequest(http.MethodPost, "http://x/api", nil)
	if _, err := rt.RoundTrip(get); err != nil {
		t.Fatalf("read refused: %v", err)
	}
	if _, err := rt.RoundTrip(post); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("write while inactive: %v, want ErrNotLeader", err)
	}
	active.Store(true)
	if _, err := rt.RoundTrip(post); err != nil {
		t.Fatalf("write while active: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConfigValidation(t *testing.T) {
	base := leader.Config{Client: kubernetes.NewForConfigOrDie(&rest.Config{Host: "http://127.0.0.1:1"}), Name: "x", Identity: "y"}
	bad := base
	bad.LeaseDuration, bad.RenewDeadline = 2*time.Second, 2*time.Second
	if _, err := leader.New(bad); err == nil {
		t.Error("lease duration == renew deadline accepted")
	}
	bad = base
	bad.RenewDeadline, bad.RetryPeriod = time.Second, time.Second
	if _, err := leader.New(bad); err == nil {
		t.Error("renew deadline <= 1.2 x retry accepted")
	}
	bad = base
	bad.LeaseDuration, bad.RenewDeadline, bad.RetryPeriod = 2*time.Second, time.Second, 200*time.Millisecond
	if _, err := leader.New(bad); err == nil {
		t.Error("renew deadline <= 1s + 1.2 x retry accepted (renewals are seen in whole seconds)")
	}
	bad = base
	bad.LeaseDuration = 1500 * time.Millisecond
	if _, err := leader.New(bad); err == nil {
		t.Error("fractional lease duration accepted (a Lease stores whole seconds)")
	}
	if _, err := leader.New(base); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}
