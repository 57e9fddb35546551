package kubelet

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestParseNodeLabels(t *testing.T) {
	got, err := ParseNodeLabels("zone=a, node-role.kubernetes.io/worker=,x=y")
	want := map[string]string{"zone": "a", "node-role.kubernetes.io/worker": "", "x": "y"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseNodeLabels = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"novalue", "bad key=x", "k=bad value"} {
		if _, err := ParseNodeLabels(bad); err == nil {
			t.Errorf("ParseNodeLabels(%q) accepted", bad)
		}
	}
}

func TestParseTaints(t *testing.T) {
	got, err := ParseTaints("dedicated=gpu:NoSchedule,maintenance:NoExecute")
	want := []v1.Taint{{Key: "dedicated", Value: "gpu", Effect: v1.TaintEffectNoSchedule}, {Key: "maintenance", Effect: v1.TaintEffectNoExecute}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseTaints = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"k=v", "k=v:Sometimes", "bad key:NoSchedule"} {
		if _, err := ParseTaints(bad); err == nil {
			t.Errorf("ParseTaints(%q) accepted", bad)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)-$(B)": "1-two", "$$(A)": "$(A)", "$(C)": "$(C)", "x$": "x$", "$(A": "$(A", "plain": "plain",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefaultPullPolicy(t *testing.T) {
	for img, want := range map[string]v1.PullPolicy{
		"busybox": v1.PullAlways, "busybox:latest": v1.PullAlways, "busybox:1.36": v1.PullIfNotPresent,
		"reg:5000/x": v1.PullAlways, "reg:5000/x:1": v1.PullIfNotPresent, "x@sha256:abc": v1.PullIfNotPresent,
	} {
		if got := defaultPullPolicy(img); got != want {
			t.Errorf("defaultPullPolicy(%q) = %s, want %s", img, got, want)
		}
	}
}
