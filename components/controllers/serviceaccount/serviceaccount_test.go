package serviceaccount

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// waitDefault polls for the namespace's default service account and
// returns it with how long it took.
func waitDefault(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, not types.UID) (*v1.ServiceAccount, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		sa, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, DefaultName, metav1.GetOptions{})
		if err == nil && sa.UID != not {
			return sa, time.Since(start)
		}
		if ctx.Err() != nil {
			t.Fatalf("no default service account in %s: %v", ns, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDefaultServiceAccount(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	testcluster.RunControllers(t, cc, New)
	cs := c.Client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Namespaces that were there before the controller get one too.
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		waitDefault(t, ctx, cs, ns, "")
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa, took := waitDefault(t, ctx, cs, "team", "")
	if took > time.Second {
		t.Fatalf("default service account took %v", took)
	}
	// Deleted, it comes back.
	if err := cs.CoreV1().ServiceAccounts("team").Delete(ctx, DefaultName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, took = waitDefault(t, ctx, cs, "team", sa.UID); took > time.Second {
		t.Fatalf("recreation took %v", took)
	}
	// The controller reports what it did.
	for {
		evs, err := cs.CoreV1().Events("team").List(ctx, metav1.ListOptions{FieldSelector: "source=" + component})
		if err == nil && len(evs.Items) > 0 && evs.Items[0].Reason == "SuccessfulCreate" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no event from %s: %v", component, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
