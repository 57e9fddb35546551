package controller

import (
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The helpers below are what Kubernetes keeps in k8s.io/kubernetes/pkg/
// controller and pkg/api/v1/pod; that module is not meant to be imported
// (it pins the whole of Kubernetes), so the few functions the workload
// controllers share are written here, following the same rules.

// PodFromTemplate makes a pod from a workload's template, owned by owner
// (controller=true, blockOwnerDeletion=true) and named after it.
func PodFromTemplate(template *v1.PodTemplateSpec, owner metav1.Object, ownerKind schema.GroupVersionKind) *v1.Pod {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: GeneratePrefix(owner.GetName()),
			Namespace:    owner.GetNamespace(),
			Labels:       copyMap(template.Labels),
			Annotations:  copyMap(template.Annotations),
			Finalizers:   append([]string(nil), template.Finalizers...),
		},
	}
	pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, ownerKind)}
	pod.Spec = *template.Spec.DeepCopy()
	return pod
}

// GeneratePrefix is "<name>-", shortened so generated names stay valid.
func GeneratePrefix(name string) string {
	const maxGeneratedNameLength = validation.DNS1123SubdomainMaxLength - 5 // room for the random suffix
	prefix := name + "-"
	if len(prefix) > maxGeneratedNameLength {
		prefix = prefix[:maxGeneratedNameLength]
	}
	return prefix
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// IsPodActive: not finished and not being deleted.
func IsPodActive(p *v1.Pod) bool {
	return p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed && p.DeletionTimestamp == nil
}

// IsPodReady reports the pod's Ready condition.
func IsPodReady(p *v1.Pod) bool {
	c := PodCondition(p, v1.PodReady)
	return c != nil && c.Status == v1.ConditionTrue
}

// IsPodAvailable: ready for at least minReadySeconds at now.
func IsPodAvailable(p *v1.Pod, minReadySeconds int32, now time.Time) bool {
	c := PodCondition(p, v1.PodReady)
	if c == nil || c.Status != v1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	return !c.LastTransitionTime.IsZero() && c.LastTransitionTime.Add(time.Duration(minReadySeconds)*time.Second).Before(now)
}

// PodCondition returns the pod's condition of type t, or nil.
func PodCondition(p *v1.Pod, t v1.PodConditionType) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// Key is the workqueue key of an object: "namespace/name" or "name".
func Key(obj metav1.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return fmt.Sprintf("%s/%s", obj.GetNamespace(), obj.GetName())
}
