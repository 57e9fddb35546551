package deployment

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestResolveFenceposts(t *testing.T) {
	for _, tc := range []struct {
		surge, unavailable intstr.IntOrString
		desired            int32
		wantS, wantU       int32
	}{
		{intstr.FromString("25%"), intstr.FromString("25%"), 10, 3, 2}, // surge rounds up, unavailable down
		{intstr.FromString("25%"), intstr.FromString("25%"), 1, 1, 0},
		{intstr.FromString("0%"), intstr.FromString("1%"), 2, 0, 1}, // both zero: unavailable becomes 1
		{intstr.FromInt32(0), intstr.FromInt32(0), 5, 0, 1},
		{intstr.FromInt32(3), intstr.FromInt32(2), 10, 3, 2},
		{intstr.FromString("100%"), intstr.FromString("50%"), 5, 5, 2},
	} {
		s, u, err := resolveFenceposts(&tc.surge, &tc.unavailable, tc.desired)
		if err != nil || s != tc.wantS || u != tc.wantU {
			t.Errorf("resolveFenceposts(%s, %s, %d) = %d, %d, %v; want %d, %d", tc.surge.String(), tc.unavailable.String(), tc.desired, s, u, err, tc.wantS, tc.wantU)
		}
	}
	if _, _, err := resolveFenceposts(ptr.To(intstr.FromString("x%")), nil, 3); err == nil {
		t.Error("a malformed percentage was accepted")
	}
}

func TestComputeHash(t *testing.T) {
	tmpl := func(image string) *v1.PodTemplateSpec {
		return &v1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "front"}},
			Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: image}}},
		}
	}
	a, b := ComputeHash(tmpl("busybox:1"), nil), ComputeHash(tmpl("busybox:1"), nil)
	if a != b || a == "" || strings.Trim(a, "bcdfghjklmnpqrstvwxz2456789") != "" {
		t.Fatalf("hash %q then %q", a, b)
	}
	if c := ComputeHash(tmpl("busybox:2"), nil); c == a {
		t.Fatal("different templates hash alike")
	}
	if c := ComputeHash(tmpl("busybox:1"), ptr.To[int32](1)); c == a {
		t.Fatal("the collision count does not change the hash")
	}
}

func TestAppendHistory(t *testing.T) {
	if got := appendHistory("", "3"); got != "3" {
		t.Fatalf("got %q", got)
	}
	if got := appendHistory("1,3", "5"); got != "1,3,5" {
		t.Fatalf("got %q", got)
	}
	long := strings.Repeat("1234567,", maxRevHistoryLengthInChars/8)
	long = long[:len(long)-1]
	got := appendHistory(long, "99")
	if len(got) > maxRevHistoryLengthInChars || !strings.HasSuffix(got, ",99") {
		t.Fatalf("length %d, suffix %q", len(got), got[len(got)-5:])
	}
}

func TestProportion(t *testing.T) {
	d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](20),
		Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: ptr.To(intstr.FromInt32(3)), MaxUnavailable: ptr.To(intstr.FromInt32(2))}},
	}}
	rs := func(n int32) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{MaxReplicasAnnotation: "13"}},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(n)}}
	}
	// 10 -> 20 replicas (13 -> 23 with surge): 8 and 5 grow by 6 and 4.
	if p := proportion(rs(8), d, 10, 0); p != 6 {
		t.Fatalf("8 of 13: %d", p)
	}
	if p := proportion(rs(5), d, 10, 6); p != 4 {
		t.Fatalf("5 of 13: %d", p)
	}
	if p := proportion(rs(5), d, 10, 9); p != 1 {
		t.Fatalf("capped by what is left: %d", p)
	}
}
