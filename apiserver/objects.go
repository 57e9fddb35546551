package apiserver

import (
	"crypto/rand"
	"encoding/hex"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

func newUID() types.UID {
	var b [16]byte
	rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40 // version 4
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return types.UID(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
}

// randomSuffix is what generateName gets, as in Kubernetes (5 characters).
func randomSuffix() string { return utilrand.String(5) }

// structField returns the named field of a typed object (a pointer to a
// struct), settable, or an invalid Value.
func structField(obj runtime.Object, name string) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}
	}
	return v.Elem().FieldByName(name)
}

// copyStatus makes obj's status that of old: writes to the main resource
// ignore status, as in Kubernetes.
func copyStatus(obj, old runtime.Object) {
	dst, src := structField(obj, "Status"), structField(old, "Status")
	if dst.IsValid() && src.IsValid() && dst.CanSet() {
		dst.Set(src)
	}
}

// withStatusOf returns old with obj's status: writes to /status change
// nothing else.
func withStatusOf(old, obj runtime.Object) runtime.Object {
	copyStatus(old, obj)
	return old
}

// specChanged reports whether the spec (or, for kinds without one, nothing)
// differs: metadata.generation counts spec changes.
func specChanged(obj, old runtime.Object) bool {
	a, b := structField(obj, "Spec"), structField(old, "Spec")
	if !a.IsValid() || !b.IsValid() {
		return false
	}
	return !equality.Semantic.DeepEqual(a.Interface(), b.Interface())
}

// resetStatusOnCreate clears the status a client sent with a new object, for
// the kinds whose status belongs to a controller or the kubelet.
func resetStatusOnCreate(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		o.Status = corev1.PodStatus{Phase: corev1.PodPending}
	case *corev1.Namespace:
		o.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
	case *corev1.Node:
		// The kubelet registers its node with its status.
	default:
		if st := structField(obj, "Status"); st.IsValid() && st.CanSet() {
			st.Set(reflect.Zero(st.Type()))
		}
	}
}

// gracefulPod reports whether a pod must wait for its kubelet to stop it:
// it is bound to a node and still has a grace period.
func gracefulPod(obj runtime.Object) bool {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return false
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	return p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds > 0
}
