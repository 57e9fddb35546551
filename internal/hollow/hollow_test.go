package hollow_test

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"synod/internal/hollow"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// poll calls f until it returns true or the timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := f()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
}

func TestHollowNodeRunsPods(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k, err := hollow.Start(ctx, c.Client, []hollow.NodeSpec{{Name: "h1", CPU: "2", Memory: "4Gi", Labels: map[string]string{"zone": "a"},
		Taints: []v1.Taint{{Key: "dedicated", Value: "x", Effect: v1.TaintEffectPreferNoSchedule}}}, {Name: "h2"}},
		hollow.Options{LeaseRenewInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	n, err := c.Client.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["zone"] != "a" || n.Status.Capacity.Cpu().String() != "2" || len(n.Spec.Taints) != 1 {
		t.Fatalf("node h1 registered as %+v / %+v", n.Labels, n.Status.Capacity)
	}
	lease, err := c.Client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := lease.Spec.RenewTime.Time
	poll(t, 5*time.Second, "lease renewal", func() (bool, error) {
		l, err := c.Client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, "h1", metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime.After(first), err
	})

	pods := c.Client.CoreV1().Pods("default")
	mk := func(name string, policy v1.RestartPolicy, ann map[string]string) {
		_, err := pods.Create(ctx, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
			Spec: v1.PodSpec{NodeName: "h1", RestartPolicy: policy, Containers: []v1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	mk("web", v1.RestartPolicyAlways, nil)
	mk("ok", v1.RestartPolicyNever, map[string]string{hollow.AnnotationRunFor: "300ms"})
	mk("bad", v1.RestartPolicyNever, map[string]string{hollow.AnnotationRunFor: "100ms", hollow.AnnotationExitCode: "3"})
	poll(t, 10*time.Second, "web Running and Ready", func() (bool, error) {
		p, err := pods.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == v1.PodReady && c.Status == v1.ConditionTrue)
		}
		return p.Status.Phase == v1.PodRunning && ready && p.Status.PodIP != "", nil
	})
	for name, phase := range map[string]v1.PodPhase{"ok": v1.PodSucceeded, "bad": v1.PodFailed} {
		poll(t, 10*time.Second, name+" "+string(phase), func() (bool, error) {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			return err == nil && p.Status.Phase == phase, err
		})
	}
	// A graceful delete is completed by the (hollow) kubelet.
	if err := pods.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "web deleted", func() (bool, error) {
		_, err := pods.Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})

	// A stopped node stops renewing its lease.
	k.StopNode("h1")
	l, _ := c.Client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, "h1", metav1.GetOptions{})
	stoppedAt := l.Spec.RenewTime.Time
	time.Sleep(time.Second) // five renew intervals: any renewal would show
	l, _ = c.Client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, "h1", metav1.GetOptions{})
	if !l.Spec.RenewTime.Time.Equal(stoppedAt) {
		t.Fatalf("stopped node renewed its lease: %v -> %v", stoppedAt, l.Spec.RenewTime.Time)
	}
	l2, _ := c.Client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, "h2", metav1.GetOptions{})
	if time.Since(l2.Spec.RenewTime.Time) > 2*time.Second {
		t.Fatalf("h2 stopped renewing too: last %v", l2.Spec.RenewTime.Time)
	}
}
