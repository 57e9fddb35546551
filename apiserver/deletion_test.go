package apiserver

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
)

// A deleted namespace is only marked Terminating: the namespace controller
// empties it and then removes the "kubernetes" finalizer through /finalize,
// and only that makes the apiserver remove it.
func TestNamespaceDeletionWaitsForFinalize(t *testing.T) {
	api := newTestAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nss := api.client.CoreV1().Namespaces()
	if _, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.client.CoreV1().ConfigMaps("doomed").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := nss.Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := nss.Get(ctx, "doomed", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("namespace gone before it was finalized: %v", err)
	}
	if ns.DeletionTimestamp == nil || ns.Status.Phase != corev1.NamespaceTerminating || !slices.Equal(ns.Spec.Finalizers, []corev1.FinalizerName{corev1.FinalizerKubernetes}) {
		t.Fatalf("deleted namespace: deletionTimestamp %v phase %q finalizers %v", ns.DeletionTimestamp, ns.Status.Phase, ns.Spec.Finalizers)
	}
	if _, err := api.client.CoreV1().ConfigMaps("doomed").Get(ctx, "c", metav1.GetOptions{}); err != nil {
		t.Fatalf("content removed by the apiserver itself (the namespace controller's job): %v", err)
	}
	// Status and metadata updates neither finalize nor remove it.
	ns.Status.Conditions = []corev1.NamespaceCondition{{Type: corev1.NamespaceContentRemaining, Status: corev1.ConditionTrue, Reason: "SomeResourcesRemain"}}
	ns, err = nss.UpdateStatus(ctx, ns, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["x"] = "y"
	ns.Spec.Finalizers = nil // ignored outside /finalize
	if ns, err = nss.Update(ctx, ns, metav1.UpdateOptions{}); err != nil || len(ns.Spec.Finalizers) != 1 || len(ns.Status.Conditions) != 1 {
		t.Fatalf("update of a terminating namespace: %v %+v", err, ns)
	}
	// A second delete changes nothing.
	if err := nss.Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ns, err = nss.Get(ctx, "doomed", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	ns.Spec.Finalizers = nil
	if _, err := nss.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nss.Get(ctx, "doomed", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("finalized namespace still there: %v", err)
	}

	// /finalize on a live namespace only changes its finalizers; deleting
	// it then removes it at once.
	if _, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "quick"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, _ = nss.Get(ctx, "quick", metav1.GetOptions{})
	ns.Spec.Finalizers = nil
	if ns, err = nss.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil || len(ns.Spec.Finalizers) != 0 {
		t.Fatalf("finalize a live namespace: %v %v", err, ns.Spec.Finalizers)
	}
	if err := nss.Delete(ctx, "quick", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nss.Get(ctx, "quick", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("unfinalized namespace still there after delete: %v", err)
	}
}

// propagationPolicy (and the deprecated orphanDependents) become the
// finalizers the garbage collector works from.
func TestDeletePropagationFinalizers(t *testing.T) {
	api := newTestAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cms := api.client.CoreV1().ConfigMaps("default")
	policy := func(p metav1.DeletionPropagation) metav1.DeleteOptions {
		return metav1.DeleteOptions{PropagationPolicy: &p}
	}
	yes := true
	for _, tc := range []struct {
		name string
		opts metav1.DeleteOptions
		want []string // nil: removed at once
	}{
		{"background", policy(metav1.DeletePropagationBackground), nil},
		{"default", metav1.DeleteOptions{}, nil},
		{"foreground", policy(metav1.DeletePropagationForeground), []string{metav1.FinalizerDeleteDependents}},
		{"orphan", policy(metav1.DeletePropagationOrphan), []string{metav1.FinalizerOrphanDependents}},
		{"orphandependents", metav1.DeleteOptions{OrphanDependents: &yes}, []string{metav1.FinalizerOrphanDependents}},
	} {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tc.name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, tc.name, tc.opts); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cm, err := cms.Get(ctx, tc.name, metav1.GetOptions{})
		if tc.want == nil {
			if !apierrors.IsNotFound(err) {
				t.Fatalf("%s: still there (%v)", tc.name, err)
			}
			continue
		}
		if err != nil || cm.DeletionTimestamp == nil || !slices.Equal(cm.Finalizers, tc.want) {
			t.Fatalf("%s: %v, finalizers %v, deletionTimestamp %v", tc.name, err, cm.Finalizers, cm.DeletionTimestamp)
		}
		// Removing the finalizer, as the garbage collector does, removes it.
		if _, err := cms.Patch(ctx, tc.name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cms.Get(ctx, tc.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s: still there without finalizers (%v)", tc.name, err)
		}
	}
	// A later delete with another policy swaps the finalizer.
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "swap", Finalizers: []string{"example.com/keep"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cms.Delete(ctx, "swap", policy(metav1.DeletePropagationOrphan))
	cms.Delete(ctx, "swap", policy(metav1.DeletePropagationForeground))
	if cm, err := cms.Get(ctx, "swap", metav1.GetOptions{}); err != nil || !slices.Equal(cm.Finalizers, []string{"example.com/keep", metav1.FinalizerDeleteDependents}) {
		t.Fatalf("swapped policy: %v %v", err, cm.Finalizers)
	}
}

// k8s.io/client-go/metadata gets, lists and watches PartialObjectMetadata.
func TestMetadataClient(t *testing.T) {
	api := newTestAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mc, err := metadata.NewForConfig(api.config)
	if err != nil {
		t.Fatal(err)
	}
	cmRes := mc.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"})
	created, err := api.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "m", Labels: map[string]string{"a": "b"}},
		Data: map[string]string{"big": "value"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cmRes.Namespace("default").Get(ctx, "m", metav1.GetOptions{})
	if err != nil || got.UID != created.UID || got.Labels["a"] != "b" {
		t.Fatalf("metadata get: %v %+v", err, got)
	}
	list, err := cmRes.Namespace("default").List(ctx, metav1.ListOptions{LabelSelector: "a=b"})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "m" || list.ResourceVersion == "" {
		t.Fatalf("metadata list: %v %+v", err, list)
	}
	w, err := cmRes.Namespace("default").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := cmRes.Namespace("default").Delete(ctx, "m", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		p, ok := ev.Object.(*metav1.PartialObjectMetadata)
		if ev.Type != watch.Deleted || !ok || p.UID != created.UID {
			t.Fatalf("watch event %v %T", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event")
	}
}

// A repeated delete of an object already being deleted writes nothing (no new
// resourceVersion, no watch event), and never lengthens a pod's grace period.
func TestRepeatedDeleteDoesNotWrite(t *testing.T) {
	api := newTestAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := api.client.CoreV1().Pods("default")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "held", Finalizers: []string{"example.com/hold"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ten, zero, sixty := int64(10), int64(0), int64(60)
	if err := pods.Delete(ctx, "held", metav1.DeleteOptions{GracePeriodSeconds: &ten}); err != nil {
		t.Fatal(err)
	}
	first, err := pods.Get(ctx, "held", metav1.GetOptions{})
	if err != nil || first.DeletionTimestamp == nil || *first.DeletionGracePeriodSeconds != 10 {
		t.Fatalf("after first delete: %v %+v", err, first.ObjectMeta)
	}
	if err := pods.Delete(ctx, "held", metav1.DeleteOptions{GracePeriodSeconds: &sixty}); err != nil {
		t.Fatal(err)
	}
	again, _ := pods.Get(ctx, "held", metav1.GetOptions{})
	if again.ResourceVersion != first.ResourceVersion || *again.DeletionGracePeriodSeconds != 10 {
		t.Fatalf("a longer grace period rewrote the pod: rv %s -> %s, grace %d", first.ResourceVersion, again.ResourceVersion, *again.DeletionGracePeriodSeconds)
	}
	// The kubelet confirms with grace 0: a real change (shorter), once.
	for range 3 {
		if err := pods.Delete(ctx, "held", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	last, _ := pods.Get(ctx, "held", metav1.GetOptions{})
	if *last.DeletionGracePeriodSeconds != 0 {
		t.Fatalf("grace not shortened: %d", *last.DeletionGracePeriodSeconds)
	}
	rv1, _ := strconv.ParseInt(first.ResourceVersion, 10, 64)
	rv2, _ := strconv.ParseInt(last.ResourceVersion, 10, 64)
	if rv2 == rv1 {
		t.Fatal("shortening the grace period did not write")
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: last.ResourceVersion, FieldSelector: "metadata.name=held"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := pods.Delete(ctx, "held", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	// Removing the finalizer deletes the pod: that is the next event, and
	// no MODIFIED may come before it.
	if _, err := pods.Patch(ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan()
	if ev.Type != watch.Deleted {
		t.Fatalf("first event after the repeated delete is %s, want DELETED (from the finalizer removal)", ev.Type)
	}
}
