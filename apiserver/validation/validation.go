// Package validation defaults and validates the objects synod serves, in the
// way kube-apiserver does.
//
// synod cannot import k8s.io/kubernetes, so the important parts of
// kubernetes/kubernetes pkg/apis/core/validation, pkg/apis/apps/validation,
// pkg/apis/batch/validation, pkg/apis/rbac/validation,
// pkg/apis/coordination/validation, pkg/apis/discovery/validation and the v1
// defaulting functions (pkg/apis/*/v1/defaults.go, plus the few defaults that
// registry strategies and default admission plugins apply) are ported here by
// hand, working directly on the versioned k8s.io/api types. Field paths, error
// types and messages follow Kubernetes so that apierrors.NewInvalid produces the
// same 422 Status a real cluster would.
//
// The REST layer is expected to:
//   - call Default before ValidateCreate / ValidateUpdate (and
//     PrepareForUpdate before Default on update);
//   - generate metadata.name from generateName and set metadata.uid before
//     calling Default on create (Job selector generation needs the uid, like
//     the job registry strategy);
//   - handle metadata.resourceVersion preconditions itself (the
//     "must be specified for an update" check is not reported here, because
//     Kubernetes fills it in for unconditional updates before validating).
package validation

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Default fills defaults in place on a typed object (e.g. *corev1.Pod), as
// the v1 defaulting functions (and a few registry strategies and default
// admission plugins) do. Unknown types are left alone.
func Default(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		defaultNamespace(o)
	case *corev1.Node:
		defaultNode(o)
	case *corev1.Pod:
		defaultPod(o)
	case *corev1.Service:
		defaultService(o)
	case *corev1.Endpoints:
		defaultEndpoints(o)
	case *corev1.Secret:
		defaultSecret(o)
	case *corev1.Event, *corev1.ConfigMap, *corev1.ServiceAccount:
		// nothing to default
	case *appsv1.Deployment:
		defaultDeployment(o)
	case *appsv1.ReplicaSet:
		defaultReplicaSet(o)
	case *appsv1.DaemonSet:
		defaultDaemonSet(o)
	case *batchv1.Job:
		defaultJob(o)
	case *coordinationv1.Lease:
		// nothing to default
	case *discoveryv1.EndpointSlice:
		defaultEndpointSlice(o)
	case *rbacv1.Role, *rbacv1.ClusterRole:
		// nothing to default
	case *rbacv1.RoleBinding:
		defaultRoleRef(&o.RoleRef)
		defaultSubjects(o.Subjects)
	case *rbacv1.ClusterRoleBinding:
		defaultRoleRef(&o.RoleRef)
		defaultSubjects(o.Subjects)
	}
}

// ValidateCreate validates a new (already defaulted) object. Whether
// metadata.namespace must be set follows from the object's kind. Unknown
// types are not validated.
func ValidateCreate(obj runtime.Object) field.ErrorList {
	switch o := obj.(type) {
	case *corev1.Namespace:
		return validateNamespace(o)
	case *corev1.Node:
		return validateNode(o)
	case *corev1.Pod:
		return validatePod(o)
	case *corev1.Service:
		return validateService(o)
	case *corev1.Endpoints:
		return validateEndpoints(o)
	case *corev1.Event:
		return validateEvent(o)
	case *corev1.ConfigMap:
		return validateConfigMap(o)
	case *corev1.Secret:
		return validateSecret(o)
	case *corev1.ServiceAccount:
		return validateServiceAccount(o)
	case *appsv1.Deployment:
		return validateDeployment(o)
	case *appsv1.ReplicaSet:
		return validateReplicaSet(o)
	case *appsv1.DaemonSet:
		return validateDaemonSet(o)
	case *batchv1.Job:
		return validateJob(o)
	case *coordinationv1.Lease:
		return validateLease(o)
	case *discoveryv1.EndpointSlice:
		return validateEndpointSlice(o)
	case *rbacv1.Role:
		return validateRole(o)
	case *rbacv1.ClusterRole:
		return validateClusterRole(o)
	case *rbacv1.RoleBinding:
		return validateRoleBinding(o)
	case *rbacv1.ClusterRoleBinding:
		return validateClusterRoleBinding(o)
	}
	return nil
}

// ValidateUpdate validates obj replacing old (same kind): the checks of
// ValidateCreate on the new object plus the immutability rules of each kind.
func ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	if fmt.Sprintf("%T", obj) != fmt.Sprintf("%T", old) {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("cannot validate update of %T with old object %T", obj, old))}
	}
	switch o := obj.(type) {
	case *corev1.Namespace:
		return validateNamespaceUpdate(o, old.(*corev1.Namespace))
	case *corev1.Node:
		return validateNodeUpdate(o, old.(*corev1.Node))
	case *corev1.Pod:
		return validatePodUpdate(o, old.(*corev1.Pod))
	case *corev1.Service:
		return validateServiceUpdate(o, old.(*corev1.Service))
	case *corev1.Endpoints:
		return validateEndpointsUpdate(o, old.(*corev1.Endpoints))
	case *corev1.Event:
		return validateEventUpdate(o, old.(*corev1.Event))
	case *corev1.ConfigMap:
		return validateConfigMapUpdate(o, old.(*corev1.ConfigMap))
	case *corev1.Secret:
		return validateSecretUpdate(o, old.(*corev1.Secret))
	case *corev1.ServiceAccount:
		return validateServiceAccountUpdate(o, old.(*corev1.ServiceAccount))
	case *appsv1.Deployment:
		return validateDeploymentUpdate(o, old.(*appsv1.Deployment))
	case *appsv1.ReplicaSet:
		return validateReplicaSetUpdate(o, old.(*appsv1.ReplicaSet))
	case *appsv1.DaemonSet:
		return validateDaemonSetUpdate(o, old.(*appsv1.DaemonSet))
	case *batchv1.Job:
		return validateJobUpdate(o, old.(*batchv1.Job))
	case *coordinationv1.Lease:
		return validateLeaseUpdate(o, old.(*coordinationv1.Lease))
	case *discoveryv1.EndpointSlice:
		return validateEndpointSliceUpdate(o, old.(*discoveryv1.EndpointSlice))
	case *rbacv1.Role:
		return validateRoleUpdate(o, old.(*rbacv1.Role))
	case *rbacv1.ClusterRole:
		return validateClusterRoleUpdate(o, old.(*rbacv1.ClusterRole))
	case *rbacv1.RoleBinding:
		return validateRoleBindingUpdate(o, old.(*rbacv1.RoleBinding))
	case *rbacv1.ClusterRoleBinding:
		return validateClusterRoleBindingUpdate(o, old.(*rbacv1.ClusterRoleBinding))
	}
	return nil
}

// PrepareForUpdate carries over from old the values Kubernetes' registry
// strategies keep on update when the new object leaves them out, so that a
// PUT of an object as the user wrote it (without allocated fields) works:
// services keep their cluster IPs, IP families, node ports and health-check
// node port (patchAllocatedValues); namespaces keep spec and status (they
// change through /finalize and /status). Call it before Default.
func PrepareForUpdate(obj, old runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Service:
		if oldSvc, ok := old.(*corev1.Service); ok {
			patchAllocatedServiceValues(o, oldSvc)
		}
	case *corev1.Namespace:
		if oldNs, ok := old.(*corev1.Namespace); ok {
			o.Spec = *oldNs.Spec.DeepCopy()
			o.Status = *oldNs.Status.DeepCopy()
		}
	}
}

func patchAllocatedServiceValues(s, old *corev1.Service) {
	needsClusterIP := func(s *corev1.Service) bool { return s.Spec.Type != corev1.ServiceTypeExternalName }
	needsNodePort := func(s *corev1.Service) bool {
		return s.Spec.Type == corev1.ServiceTypeNodePort ||
			(s.Spec.Type == corev1.ServiceTypeLoadBalancer && (s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts))
	}
	if needsClusterIP(old) && needsClusterIP(s) {
		if s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) == 0 {
			s.Spec.ClusterIP = old.Spec.ClusterIP
			s.Spec.ClusterIPs = append([]string(nil), old.Spec.ClusterIPs...)
		}
		if len(s.Spec.IPFamilies) == 0 {
			s.Spec.IPFamilies = append([]corev1.IPFamily(nil), old.Spec.IPFamilies...)
		}
		if s.Spec.IPFamilyPolicy == nil && old.Spec.IPFamilyPolicy != nil {
			s.Spec.IPFamilyPolicy = ptrTo(*old.Spec.IPFamilyPolicy)
		}
	}
	if needsNodePort(old) && needsNodePort(s) {
		used := map[int32]bool{}
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				used[p.NodePort] = true
			}
		}
		byName := map[string]int32{}
		for _, p := range old.Spec.Ports {
			byName[p.Name] = p.NodePort
		}
		for i := range s.Spec.Ports {
			if p := &s.Spec.Ports[i]; p.NodePort == 0 && !used[byName[p.Name]] {
				p.NodePort = byName[p.Name]
			}
		}
	}
	if s.Spec.HealthCheckNodePort == 0 && old.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		old.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		s.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
}

var metadataPath = field.NewPath("metadata")

// validateObjectMeta is core's ValidateObjectMeta: apimachinery's checks plus
// the Kubernetes finalizer-name rule.
func validateObjectMeta(m *metav1.ObjectMeta, namespaced bool, nameFn apivalidation.ValidateNameFunc) field.ErrorList {
	errs := apivalidation.ValidateObjectMeta(m, namespaced, nameFn, metadataPath)
	for i := range m.Finalizers {
		errs = append(errs, validateKubeFinalizerName(m.Finalizers[i], metadataPath.Child("finalizers").Index(i))...)
	}
	return errs
}

// validateObjectMetaUpdate is apimachinery's ValidateObjectMetaUpdate without
// the resourceVersion check (see the package comment), plus the finalizer rule.
func validateObjectMetaUpdate(newMeta, oldMeta *metav1.ObjectMeta) field.ErrorList {
	var errs field.ErrorList
	for _, e := range apivalidation.ValidateObjectMetaUpdate(newMeta, oldMeta, metadataPath) {
		if e.Field == "metadata.resourceVersion" {
			continue
		}
		errs = append(errs, e)
	}
	for i := range newMeta.Finalizers {
		errs = append(errs, validateKubeFinalizerName(newMeta.Finalizers[i], metadataPath.Child("finalizers").Index(i))...)
	}
	return errs
}

var standardFinalizers = map[string]bool{
	string(corev1.FinalizerKubernetes): true,
	metav1.FinalizerOrphanDependents:   true,
	metav1.FinalizerDeleteDependents:   true,
}

func validateKubeFinalizerName(name string, fldPath *field.Path) field.ErrorList {
	if !strings.Contains(name, "/") && !standardFinalizers[name] {
		return field.ErrorList{field.Invalid(fldPath, name, "name is neither a standard finalizer name nor is it fully qualified")}
	}
	return nil
}

// validateImmutable is ValidateImmutableField ("field is immutable").
func validateImmutable(newVal, oldVal interface{}, fldPath *field.Path) field.ErrorList {
	return apivalidation.ValidateImmutableField(newVal, oldVal, fldPath)
}

func validateNonnegative(v int64, fldPath *field.Path) field.ErrorList {
	return apivalidation.ValidateNonnegativeField(v, fldPath)
}

func validateDNS1123Label(value string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(value) {
		errs = append(errs, field.Invalid(fldPath, value, msg))
	}
	return errs
}

func validateDNS1123Subdomain(value string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(value) {
		errs = append(errs, field.Invalid(fldPath, value, msg))
	}
	return errs
}

func validateQualifiedName(value string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsQualifiedName(value) {
		errs = append(errs, field.Invalid(fldPath, value, msg))
	}
	return errs
}

func ptrTo[T any](v T) *T { return &v }
