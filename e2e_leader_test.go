package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"synod/components"
	"synod/internal/launch"
)

// Election timings for the test: short so that many kills fit in a run.
const (
	e2eLeaseDuration = 3 * time.Second
	e2eRenewDeadline = 2 * time.Second
	e2eRetryPeriod   = 250 * time.Millisecond // the default
)

// TestComponentLeaderFailover kills the master holding the scheduler lease
// again and again: each time another master's scheduler must take over
// within the lease duration + 2s and schedule a new pod, and over the whole
// run the components' own records (their logs, and their active metric
// sampled on every master) never show two active schedulers or two active
// controller-managers.
func TestComponentLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("kills masters repeatedly")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	c, err := launch.Start(ctx, launch.Options{Binary: synodBinary, Masters: 3, Dir: t.TempDir(), API: true, StopTimeout: 10 * time.Second,
		ExtraArgs: []string{"--leader-elect-lease-duration", e2eLeaseDuration.String(), "--leader-elect-renew-deadline", e2eRenewDeadline.String(),
			"--leader-elect-retry-period", e2eRetryPeriod.String()}})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	startHollowNodes(t, c, "node-1", "--count", "2", "--name-prefix", "node-")
	clients := perMasterClients(t, c)

	sampler := startActiveSampler(t, c)
	kills := map[string][]time.Time{} // master name -> times it was SIGKILLed
	// Rounds kill the holder, except one that freezes it (SIGSTOP) until
	// another master has taken over, then thaws it: it wakes up believing
	// it leads, and must neither write nor overlap the new leader.
	const rounds = 5
	const pauseRound = 2
	for round := range rounds {
		// Alternate the target: the two leases are often, but not always,
		// held by the same master.
		lease := components.SchedulerLease
		if round%2 == 1 {
			lease = components.ControllerManagerLease
		}
		holder := waitLeaseHolder(t, clients, -1, lease, "", 20*time.Second)
		name, _, _ := strings.Cut(holder, "_")
		idx := masterIndex(t, c, name)
		sig := syscall.SIGKILL
		if round == pauseRound {
			sig = syscall.SIGSTOP
		}
		if err := c.Kill(idx, sig); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		if sig == syscall.SIGKILL {
			kills[name] = append(kills[name], killed)
		}
		// A pod created right after the fault must be scheduled by the
		// next scheduler.
		podName := fmt.Sprintf("after-fault-%d", round)
		createPod(t, clients, idx, podName)
		next, acquired := waitLeaseAcquired(t, clients, idx, lease, holder, e2eLeaseDuration+2*time.Second+5*time.Second)
		took := acquired.Sub(killed)
		t.Logf("round %d: %s the %s lease holder %s; %s took over after %s", round, sig, lease, holder, next, took.Round(time.Millisecond))
		if took > e2eLeaseDuration+2*time.Second {
			t.Errorf("takeover took %s, want <= lease duration %s + 2s", took, e2eLeaseDuration)
		}
		waitPodBound(t, clients, idx, podName, 10*time.Second)
		if sig == syscall.SIGSTOP {
			if err := c.Kill(idx, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := c.StartMaster(idx); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.WaitReady(wctx)
		wcancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	sampler.stop(t)
	c.Stop()
	for _, lease := range []string{components.SchedulerLease, components.ControllerManagerLease} {
		checkActiveIntervals(t, c, lease, kills)
	}
}

func masterIndex(t *testing.T, c *launch.Cluster, name string) int {
	t.Helper()
	for i, m := range c.Masters() {
		if m.Name == name {
			return i
		}
	}
	t.Fatalf("no master named %q", name)
	return -1
}

// perMasterClients is one admin client per master. A SIGSTOPped master
// still accepts TCP connections (the kernel does), so a client that only
// fails over on dial errors would hang on it; the helpers below instead
// try the masters other than the faulted one, each with a short timeout.
func perMasterClients(t *testing.T, c *launch.Cluster) []kubernetes.Interface {
	t.Helper()
	base, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
	if err != nil {
		t.Fatal(err)
	}
	var out []kubernetes.Interface
	for _, m := range c.Masters() {
		cfg := rest.CopyConfig(base)
		cfg.Host = m.APIURL
		cfg.Timeout = 3 * time.Second
		out = append(out, kubernetes.NewForConfigOrDie(cfg))
	}
	return out
}

// onAnyMaster runs f with the client of each master but skip in turn until
// f succeeds or timeout passes.
func onAnyMaster(t *testing.T, clients []kubernetes.Interface, skip int, timeout time.Duration, what string, f func(ctx context.Context, client kubernetes.Interface) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for i := 0; ; i++ {
		if idx := i % len(clients); idx != skip {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			ok, err := f(ctx, clients[idx])
			cancel()
			if ok {
				return
			}
			if err != nil {
				lastErr = err
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error: %v)", what, timeout, lastErr)
		}
		if i%len(clients) == len(clients)-1 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// waitLeaseHolder waits until the lease has a holder other than not (and
// other than "") and returns it.
func waitLeaseHolder(t *testing.T, clients []kubernetes.Interface, skip int, lease, not string, timeout time.Duration) string {
	t.Helper()
	holder, _ := waitLeaseAcquired(t, clients, skip, lease, not, timeout)
	return holder
}

// waitLeaseAcquired is waitLeaseHolder that also returns when the new holder
// acquired the lease (its spec.acquireTime, written by the new holder: the
// same clock as the test's, on this machine).
func waitLeaseAcquired(t *testing.T, clients []kubernetes.Interface, skip int, lease, not string, timeout time.Duration) (string, time.Time) {
	t.Helper()
	var holder string
	var acquired time.Time
	onAnyMaster(t, clients, skip, timeout, "lease "+lease+" gets a holder other than "+not, func(ctx context.Context, client kubernetes.Interface) (bool, error) {
		l, err := client.CoordinationV1().Leases("kube-system").Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && *l.Spec.HolderIdentity != not {
			holder = *l.Spec.HolderIdentity
			if l.Spec.AcquireTime != nil {
				acquired = l.Spec.AcquireTime.Time
			}
			return true, nil
		}
		return false, nil
	})
	return holder, acquired
}

func createPod(t *testing.T, clients []kubernetes.Interface, skip int, name string) {
	t.Helper()
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}}}
	onAnyMaster(t, clients, skip, 20*time.Second, "create pod "+name, func(ctx context.Context, client kubernetes.Interface) (bool, error) {
		_, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), err
	})
}

func waitPodBound(t *testing.T, clients []kubernetes.Interface, skip int, name string, timeout time.Duration) {
	t.Helper()
	onAnyMaster(t, clients, skip, timeout, "pod "+name+" scheduled", func(ctx context.Context, client kubernetes.Interface) (bool, error) {
		p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Spec.NodeName != "", err
	})
}

// activeSampler polls leader_election_master_status on every master.
type activeSampler struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	bad    []string
	polls  int
}

func startActiveSampler(t *testing.T, c *launch.Cluster) *activeSampler {
	s := &activeSampler{}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	hc := apiClient(t, c.Dir()+"/pki", "admin", "system:masters")
	hc.Timeout = 500 * time.Millisecond
	re := regexp.MustCompile(`(?m)^leader_election_master_status\{name="([^"]+)"\} 1$`)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for ctx.Err() == nil {
			active := map[string][]string{}
			for _, m := range c.Masters() {
				if m.PID == 0 {
					continue
				}
				resp, err := hc.Get(m.APIURL + "/metrics")
				if err != nil {
					continue
				}
				body := new(strings.Builder)
				bufio.NewReader(resp.Body).WriteTo(body)
				resp.Body.Close()
				for _, sm := range re.FindAllStringSubmatch(body.String(), -1) {
					active[sm[1]] = append(active[sm[1]], m.Name)
				}
			}
			s.mu.Lock()
			s.polls++
			for lease, who := range active {
				if len(who) > 1 {
					s.bad = append(s.bad, fmt.Sprintf("%s: %s active on %v", time.Now().Format("15:04:05.000"), lease, who))
				}
			}
			s.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return s
}

func (s *activeSampler) stop(t *testing.T) {
	s.cancel()
	s.wg.Wait()
	t.Logf("sampled the active metric on every master %d times", s.polls)
	for _, b := range s.bad {
		t.Errorf("two active at once (metrics): %s", b)
	}
}

var activeUntilRE = regexp.MustCompile(`active_until=(\S+)`)

var logLineRE = regexp.MustCompile(`msg="(leadership acquired; component active|leadership lost or given up; component stopped)".* component=(\S+) .*identity=(\S+) .*at=(\S+)`)

// checkActiveIntervals rebuilds, from the masters' logs, every interval in
// which a component was active (a SIGKILLed run ends at its kill), and
// fails if two overlap.
func checkActiveIntervals(t *testing.T, c *launch.Cluster, lease string, kills map[string][]time.Time) {
	t.Helper()
	type interval struct {
		who        string
		start, end time.Time
	}
	var all []interval
	for _, m := range c.Masters() {
		data, err := os.ReadFile(m.LogFile)
		if err != nil {
			t.Fatal(err)
		}
		open := map[string]time.Time{} // identity -> start
		for _, line := range strings.Split(string(data), "\n") {
			sm := logLineRE.FindStringSubmatch(line)
			if sm == nil || sm[2] != lease {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, sm[4])
			if err != nil {
				t.Fatalf("bad time in %q: %v", line, err)
			}
			if strings.HasPrefix(sm[1], "leadership acquired") {
				open[sm[3]] = at
			} else if start, ok := open[sm[3]]; ok {
				// The component could act until its fence closed, if
				// that was before it logged the stop.
				if au := activeUntilRE.FindStringSubmatch(line); au != nil {
					if t2, err := time.Parse(time.RFC3339Nano, au[1]); err == nil && t2.Before(at) {
						at = t2
					}
				}
				all = append(all, interval{sm[3], start, at})
				delete(open, sm[3])
			}
		}
		// Runs that never logged a stop were SIGKILLed: they ended no later
		// than the first kill of this master after they started.
		for who, start := range open {
			end := time.Time{}
			for _, k := range kills[m.Name] {
				if k.After(start) && (end.IsZero() || k.Before(end)) {
					end = k
				}
			}
			if end.IsZero() {
				t.Errorf("%s: %s active since %s with no recorded end", lease, who, start.Format("15:04:05.000"))
				continue
			}
			all = append(all, interval{who, start, end})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start.Before(all[j].start) })
	for i := 1; i < len(all); i++ {
		if all[i].start.Before(all[i-1].end) {
			t.Errorf("%s: two active at once: %s [%s, %s] and %s from %s", lease, all[i-1].who, all[i-1].start.Format("15:04:05.000"),
				all[i-1].end.Format("15:04:05.000"), all[i].who, all[i].start.Format("15:04:05.000"))
		}
	}
	t.Logf("%s: %d active intervals, none overlapping", lease, len(all))
	if len(all) < 2 {
		t.Errorf("%s: only %d active intervals recorded; the kills should have moved it", lease, len(all))
	}
}
