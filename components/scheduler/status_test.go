package scheduler

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"synod/internal/testcluster"
)

// A PodScheduled=False written late, after the pod was bound, must not land:
// the patch carries the resourceVersion of the pod that was judged.
func TestLateUnschedulableStatusIsRefused(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Masters: 1})
	cc := testcluster.NewControllerContext(t, c)
	s, err := New(Config{Client: cc.Client, Informers: cc.Informers})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := c.Client.CoreV1().Pods("default")
	judged, err := pods.Create(ctx, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// While the pod is as judged, the condition is written.
	if err := s.setUnschedulable(ctx, judged, "0/0 nodes"); err != nil {
		t.Fatalf("first write: %v", err)
	}
	cur, _ := pods.Get(ctx, "p", metav1.GetOptions{})
	if c := podCondition(cur, v1.PodScheduled); c == nil || c.Status != v1.ConditionFalse || c.Message != "0/0 nodes" {
		t.Fatalf("condition after the write: %+v", cur.Status.Conditions)
	}
	if err := pods.Bind(ctx, &v1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Target: v1.ObjectReference{Kind: "Node", Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.setUnschedulable(ctx, cur, "0/1 nodes"); !apierrors.IsConflict(err) {
		t.Fatalf("late write on a bound pod: %v, want Conflict", err)
	}
	bound, _ := pods.Get(ctx, "p", metav1.GetOptions{})
	if c := podCondition(bound, v1.PodScheduled); c == nil || c.Status != v1.ConditionTrue {
		t.Errorf("bound pod's condition: %+v", bound.Status.Conditions)
	}
}
