package nodeipam

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// runIPAM runs one term of the controller; stop ends it (as a lost lease
// would) and waits for it.
func runIPAM(t *testing.T, c *testcluster.Cluster, cluster string, mask int) (stop func()) {
	t.Helper()
	cc := testcluster.NewControllerContext(t, c)
	cc.Options.ClusterCIDR, cc.Options.NodeCIDRMaskSize = cluster, mask
	r, err := New(cc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.Informers.Start(ctx.Done())
	cc.Informers.WaitForCacheSync(ctx.Done())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			cc.Informers.Shutdown()
		})
	}
	t.Cleanup(stop)
	return stop
}

func createNodes(t *testing.T, client kubernetes.Interface, from, to int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.CoreV1().Nodes().Create(context.Background(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("node-", i)}}, metav1.CreateOptions{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitCIDRs waits until n nodes carry a podCIDR and checks that they are
// all distinct, inside cluster and consistent; it returns them by node.
func waitCIDRs(t *testing.T, client kubernetes.Interface, n int, cluster string, mask int) map[string]string {
	t.Helper()
	base := netip.MustParsePrefix(cluster)
	deadline := time.Now().Add(15 * time.Second)
	for {
		list, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, node := range list.Items {
			if node.Spec.PodCIDR != "" {
				got[node.Name] = node.Spec.PodCIDR
				if len(node.Spec.PodCIDRs) != 1 || node.Spec.PodCIDRs[0] != node.Spec.PodCIDR {
					t.Fatalf("node %s: podCIDR %s, podCIDRs %v", node.Name, node.Spec.PodCIDR, node.Spec.PodCIDRs)
				}
			}
		}
		if len(got) == n {
			holder := map[string]string{}
			for node, c := range got {
				p := netip.MustParsePrefix(c)
				if p.Bits() != mask || !base.Contains(p.Addr()) || p.Masked() != p {
					t.Fatalf("node %s got %s, not a /%d of %s", node, c, mask, cluster)
				}
				if other, dup := holder[c]; dup {
					t.Fatalf("CIDR %s given to both %s and %s", c, other, node)
				}
				holder[c] = node
			}
			return got
		}
		if len(got) > n {
			t.Fatalf("%d nodes have CIDRs, want %d", len(got), n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d nodes got a podCIDR", len(got), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUniqueAcrossRestart: 50 nodes get distinct CIDRs; a new term of the
// controller (as after a leader change) keeps them and gives nodes created
// meanwhile distinct ones too.
func TestUniqueAcrossRestart(t *testing.T) {
	const cluster, mask = "10.100.0.0/16", 24
	c := testcluster.Start(t, testcluster.Options{})
	stop := runIPAM(t, c, cluster, mask)
	createNodes(t, c.Client, 0, 50)
	first := waitCIDRs(t, c.Client, 50, cluster, mask)
	stop()

	createNodes(t, c.Client, 50, 60)
	runIPAM(t, c, cluster, mask)
	all := waitCIDRs(t, c.Client, 60, cluster, mask)
	for node, cidr := range first {
		if all[node] != cidr {
			t.Errorf("node %s: CIDR %s became %s", node, cidr, all[node])
		}
	}
}

// TestRangeFull: with room for two nodes the third waits with a
// CIDRNotAvailable event and gets the CIDR of a deleted node.
func TestRangeFull(t *testing.T) {
	const cluster, mask = "10.200.0.0/23", 24
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	runIPAM(t, c, cluster, mask)
	createNodes(t, c.Client, 0, 2)
	got := waitCIDRs(t, c.Client, 2, cluster, mask)
	createNodes(t, c.Client, 2, 3)
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := c.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"reason": "CIDRNotAvailable", "involvedObject.name": "node-2"}.String()})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs.Items) > 0 {
			if e := evs.Items[0]; e.Message != "Node node-2 status is now: CIDRNotAvailable" || e.Source.Component != component {
				t.Fatalf("event %+v", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no CIDRNotAvailable event for node-2")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, _ := c.Client.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{}); n.Spec.PodCIDR != "" {
		t.Fatalf("node-2 got %s from a full range", n.Spec.PodCIDR)
	}
	if err := c.Client.CoreV1().Nodes().Delete(ctx, "node-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	after := waitCIDRs(t, c.Client, 2, cluster, mask)
	if after["node-2"] != got["node-0"] {
		t.Fatalf("node-2 got %q, want the released %s", after["node-2"], got["node-0"])
	}
}
