// Package replicasettest is what the replicaset and deployment controller
// tests share: hollow nodes, a stand-in scheduler that binds pods round
// robin (so these tests do not depend on the real scheduler), and polling.
package replicasettest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"synod/internal/hollow"
)

// AnnotationNoBind keeps the Binder away from a pod: it stays unscheduled.
const AnnotationNoBind = "test.synod.io/no-bind"

// StartNodes registers n hollow nodes (node-1..node-n) that run the pods
// bound to them, until the test ends.
func StartNodes(t testing.TB, client kubernetes.Interface, n int) []string {
	t.Helper()
	specs := make([]hollow.NodeSpec, n)
	names := make([]string, n)
	for i := range specs {
		names[i] = fmt.Sprintf("node-%d", i+1)
		specs[i] = hollow.NodeSpec{Name: names[i]}
	}
	k, err := hollow.Start(context.Background(), client, specs, hollow.Options{LeaseRenewInterval: time.Second})
	if err != nil {
		t.Fatalf("start hollow nodes: %v", err)
	}
	t.Cleanup(k.Close)
	return names
}

// Binder binds unscheduled pods to nodes round robin through pods/binding.
type Binder struct {
	client kubernetes.Interface
	nodes  []string
	next   atomic.Uint64
	paused atomic.Bool
	queue  workqueue.TypedRateLimitingInterface[string]
	pods   cache.Indexer
	// Delay is waited before each binding, to stretch rollouts out.
	delay time.Duration
}

// StartBinder runs a Binder until the test ends. Pods annotated
// AnnotationNoBind are left alone; delay is waited before each binding.
func StartBinder(t testing.TB, client kubernetes.Interface, nodes []string, delay time.Duration) *Binder {
	t.Helper()
	factory := informers.NewSharedInformerFactory(client, 0)
	informer := factory.Core().V1().Pods().Informer()
	b := &Binder{
		client: client, nodes: nodes, delay: delay, pods: informer.GetIndexer(),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](10*time.Millisecond, time.Second)),
	}
	enqueue := func(obj any) {
		if p, ok := obj.(*v1.Pod); ok && b.wants(p) {
			b.queue.Add(p.Namespace + "/" + p.Name)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, cur any) { enqueue(cur) },
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b.work(ctx) {
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		b.queue.ShutDown()
		wg.Wait()
		factory.Shutdown()
	})
	return b
}

func (b *Binder) wants(p *v1.Pod) bool {
	return p.Spec.NodeName == "" && p.DeletionTimestamp == nil && p.Annotations[AnnotationNoBind] != "true"
}

// Pause stops binding (pods stay Pending) until Resume.
func (b *Binder) Pause() { b.paused.Store(true) }

// Resume binds again, including the pods that arrived while paused.
func (b *Binder) Resume() {
	b.paused.Store(false)
	for _, obj := range b.pods.List() {
		if p := obj.(*v1.Pod); b.wants(p) {
			b.queue.Add(p.Namespace + "/" + p.Name)
		}
	}
}

func (b *Binder) work(ctx context.Context) bool {
	key, quit := b.queue.Get()
	if quit {
		return false
	}
	defer b.queue.Done(key)
	if b.paused.Load() {
		b.queue.Forget(key)
		return true // Resume requeues
	}
	obj, ok, _ := b.pods.GetByKey(key)
	if !ok {
		return true
	}
	p := obj.(*v1.Pod)
	if !b.wants(p) {
		return true
	}
	if b.delay > 0 {
		time.Sleep(b.delay)
	}
	node := b.nodes[int(b.next.Add(1)-1)%len(b.nodes)]
	err := b.client.CoreV1().Pods(p.Namespace).Bind(ctx, &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		Target:     v1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
		b.queue.AddRateLimited(key)
		return true
	}
	b.queue.Forget(key)
	return true
}

// Poll calls f every 20ms until it returns true, failing the test with
// what and f's last error after timeout.
func Poll(t testing.TB, timeout time.Duration, what string, f func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
