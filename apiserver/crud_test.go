package apiserver

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestConfigMapCRUDAndConflicts(t *testing.T) {
	api := newTestAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cms := api.client.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c1", Labels: map[string]string{"app": "x"}}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.UID == "" || cm.ResourceVersion == "" || cm.CreationTimestamp.IsZero() {
		t.Fatalf("server-owned metadata missing: %+v", cm.ObjectMeta)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("duplicate create: %v", err)
	}
	cm.Data["a"] = "2"
	upd, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v, want 409 Conflict", err)
	}
	p, err := cms.Patch(ctx, "c1", types.MergePatchType, []byte(`{"data":{"b":"3"}}`), metav1.PatchOptions{})
	if err != nil || p.Data["b"] != "3" || p.Data["a"] != "2" {
		t.Fatalf("merge patch: %v %v", p, err)
	}
	sp, err := cms.Patch(ctx, "c1", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"tier":"web"}}}`), metav1.PatchOptions{})
	if err != nil || sp.Labels["tier"] != "web" || sp.Labels["app"] != "x" {
		t.Fatalf("strategic patch: %v %v", sp, err)
	}
	jp, err := cms.Patch(ctx, "c1", types.JSONPatchType, []byte(`[{"op":"remove","path":"/data/b"}]`), metav1.PatchOptions{})
	if err != nil || jp.Data["b"] != "" {
		t.Fatalf("json patch: %v %v", jp, err)
	}
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "app=x"})
	if err != nil || len(list.Items) != 1 || list.ResourceVersion == "" {
		t.Fatalf("list by label: %v %v", list, err)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{FieldSelector: "spec.bogus=1"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("unknown field selector: %v, want 400", err)
	}
	if err := cms.Delete(ctx, "c1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "c1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := api.client.CoreV1().ConfigMaps("nope").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("create in a missing namespace: %v, want 404", err)
	}
	_ = upd
}

func TestPodAdmissionAndBinding(t *testing.T) {
	api := newTestAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := api.client.CoreV1().Pods("default")
	pod, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Name) != len("web-")+5 || pod.Status.Phase != corev1.PodPending || pod.Spec.SchedulerName != "default-scheduler" {
		t.Fatalf("created pod: name %q phase %q scheduler %q", pod.Name, pod.Status.Phase, pod.Spec.SchedulerName)
	}
	tol := map[string]int64{}
	for _, tl := range pod.Spec.Tolerations {
		if tl.TolerationSeconds != nil {
			tol[tl.Key] = *tl.TolerationSeconds
		}
	}
	if tol["node.kubernetes.io/not-ready"] != 300 || tol["node.kubernetes.io/unreachable"] != 300 {
		t.Fatalf("default tolerations missing: %+v", pod.Spec.Tolerations)
	}
	// The scheduler first found no node: PodScheduled=False.
	unsched := []byte(`{"status":{"conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/0 nodes"}]}}`)
	if _, err := pods.Patch(ctx, pod.Name, types.StrategicMergePatchType, unsched, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name}, Target: corev1.ObjectReference{Kind: "Node", Name: "n1"}}
	if err := pods.Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if bound, err := pods.Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || len(bound.Status.Conditions) != 1 ||
		bound.Status.Conditions[0].Type != corev1.PodScheduled || bound.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Fatalf("after binding, conditions %+v (%v), want one PodScheduled=True", bound.Status.Conditions, err)
	}
	if err := pods.Bind(ctx, b, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("second binding: %v, want Conflict", err)
	}
	got, _ := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	if got.Spec.NodeName != "n1" {
		t.Fatalf("bound pod nodeName %q", got.Spec.NodeName)
	}
	// Status writes change only status; main writes leave status alone.
	got.Status.Phase = corev1.PodRunning
	got.Spec.ActiveDeadlineSeconds = nil
	st, err := pods.UpdateStatus(ctx, got, metav1.UpdateOptions{})
	if err != nil || st.Status.Phase != corev1.PodRunning {
		t.Fatalf("update status: %v %v", st, err)
	}
	st.Status.Phase = corev1.PodFailed
	st.Labels = map[string]string{"x": "y"}
	main, err := pods.Update(ctx, st, metav1.UpdateOptions{})
	if err != nil || main.Status.Phase != corev1.PodRunning || main.Labels["x"] != "y" {
		t.Fatalf("main update changed status or dropped labels: %v %v", main, err)
	}
	// A bound pod is deleted gracefully: it gets a deletionTimestamp first.
	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	del, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil || del.DeletionTimestamp == nil || del.DeletionGracePeriodSeconds == nil || *del.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("graceful delete: %v %v", del, err)
	}
	zero := int64(0)
	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after delete with grace 0: %v", err)
	}
}

func TestUnknownFieldsFollowFieldValidation(t *testing.T) {
	api := newTestAPI(t)
	body := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"typo"},"dataa":{"a":"1"}}`
	post := func(validation string) (int, string, string) {
		req, _ := http.NewRequest("POST", api.http.URL+"/api/v1/namespaces/default/configmaps?fieldValidation="+validation, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Warning"), string(b)
	}
	if code, _, b := post("Strict"); code != 400 || !strings.Contains(b, `unknown field \"dataa\"`) {
		t.Fatalf("Strict: %d %s", code, b)
	}
	if code, warn, b := post("Warn"); code != 201 || !strings.Contains(warn, "dataa") {
		t.Fatalf("Warn: %d warning %q %s", code, warn, b)
	}
}
