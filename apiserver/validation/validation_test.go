package validation

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	synodresource "synod/apiserver/resource"
)

// want is one expected error: its field path, its type and (optionally) a
// substring of its detail.
type want struct {
	field  string
	typ    field.ErrorType
	detail string
}

func (w want) String() string { return fmt.Sprintf("%s %s %q", w.field, w.typ, w.detail) }

func expectErrors(t *testing.T, errs field.ErrorList, wants ...want) {
	t.Helper()
	if len(wants) == 0 {
		if len(errs) != 0 {
			t.Errorf("expected no errors, got:\n%s", errs.ToAggregate())
		}
		return
	}
	for _, w := range wants {
		found := false
		for _, e := range errs {
			if e.Field == w.field && e.Type == w.typ && strings.Contains(e.Detail, w.detail) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("expected error %v, got:\n%v", w, errs.ToAggregate())
		}
	}
}

func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "default", UID: "6a1f9c1e-1111-2222-3333-444455556666"}
}

func clusterMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, UID: "6a1f9c1e-1111-2222-3333-444455556666"}
}

func validPodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		Containers: []corev1.Container{{
			Name:  "web",
			Image: "nginx:1.27",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			},
			VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			Env:            []corev1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstrInt(80)}}},
		}},
		Volumes:     []corev1.Volume{{Name: "data"}, {Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}},
		Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptrTo(int64(300))}},
	}
}

func validPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: meta("web-0"), Spec: validPodSpec()}
}

func validTemplate(labels map[string]string) corev1.PodTemplateSpec {
	l := map[string]string{}
	for k, v := range labels {
		l[k] = v
	}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l}, Spec: validPodSpec()}
}

func validService() *corev1.Service {
	return &corev1.Service{ObjectMeta: meta("web"), Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "https", Port: 443, TargetPort: intstrStr("https")}},
	}}
}

func validDeployment() *appsv1.Deployment {
	l := map[string]string{"app": "web"}
	return &appsv1.Deployment{ObjectMeta: meta("web"), Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: l}, Template: validTemplate(l)}}
}

func validReplicaSet() *appsv1.ReplicaSet {
	l := map[string]string{"app": "web", "pod-template-hash": "abc"}
	return &appsv1.ReplicaSet{ObjectMeta: meta("web-abc"), Spec: appsv1.ReplicaSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: l}, Template: validTemplate(l)}}
}

func validDaemonSet() *appsv1.DaemonSet {
	l := map[string]string{"app": "agent"}
	return &appsv1.DaemonSet{ObjectMeta: meta("agent"), Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: l}, Template: validTemplate(l)}}
}

func validJob() *batchv1.Job {
	t := validTemplate(map[string]string{"app": "batch"})
	t.Spec.RestartPolicy = corev1.RestartPolicyNever
	return &batchv1.Job{ObjectMeta: meta("pi"), Spec: batchv1.JobSpec{Template: t}}
}

// validObjects has one valid object for every kind synod serves.
func validObjects() map[string]runtime.Object {
	return map[string]runtime.Object{
		"Namespace": &corev1.Namespace{ObjectMeta: clusterMeta("team-a")},
		"Node": &corev1.Node{ObjectMeta: clusterMeta("node-1.example.com"), Spec: corev1.NodeSpec{
			PodCIDR: "10.244.1.0/24", Taints: []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}}},
		"Pod":     validPod(),
		"Service": validService(),
		"Endpoints": &corev1.Endpoints{ObjectMeta: meta("web"), Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: "10.244.1.5"}}, Ports: []corev1.EndpointPort{{Name: "http", Port: 80}, {Name: "https", Port: 443}}}}},
		"Event": &corev1.Event{ObjectMeta: meta("web-0.17a"), InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-0"},
			Reason: "Scheduled", Message: "assigned", Type: corev1.EventTypeNormal},
		"ConfigMap":      &corev1.ConfigMap{ObjectMeta: meta("cfg"), Data: map[string]string{"app.conf": "x=1", ".env": "A=B"}, BinaryData: map[string][]byte{"blob": {1, 2}}},
		"Secret":         &corev1.Secret{ObjectMeta: meta("creds"), Data: map[string][]byte{"password": []byte("hunter2")}, StringData: map[string]string{"user": "admin"}},
		"ServiceAccount": &corev1.ServiceAccount{ObjectMeta: meta("builder")},
		"Deployment":     validDeployment(),
		"ReplicaSet":     validReplicaSet(),
		"DaemonSet":      validDaemonSet(),
		"Job":            validJob(),
		"Lease": &coordinationv1.Lease{ObjectMeta: meta("kube-scheduler"), Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptrTo("master-1"), LeaseDurationSeconds: ptrTo(int32(15)), LeaseTransitions: ptrTo(int32(0))}},
		"EndpointSlice": &discoveryv1.EndpointSlice{ObjectMeta: meta("web-abcde"), AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}, NodeName: ptrTo("node-1")}},
			Ports:     []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(80))}}},
		"Role": &rbacv1.Role{ObjectMeta: meta("reader"), Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}},
		"RoleBinding": &rbacv1.RoleBinding{ObjectMeta: meta("reader"), RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "reader"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}, {Kind: "ServiceAccount", Name: "builder", Namespace: "default"}}},
		"ClusterRole": &rbacv1.ClusterRole{ObjectMeta: clusterMeta("system:reader"), Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"*"}}, {NonResourceURLs: []string{"/healthz"}, Verbs: []string{"get"}}}},
		"ClusterRoleBinding": &rbacv1.ClusterRoleBinding{ObjectMeta: clusterMeta("system:reader"), RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "system:reader"},
			Subjects: []rbacv1.Subject{{Kind: "Group", Name: "system:authenticated"}, {Kind: "ServiceAccount", Name: "builder", Namespace: "kube-system"}}},
	}
}

func TestValidObjectsOfEveryKindPass(t *testing.T) {
	objs := validObjects()
	for _, r := range synodresource.All() {
		obj, ok := objs[r.Kind]
		if !ok {
			t.Errorf("no valid %s fixture", r.Kind)
			continue
		}
		t.Run(r.Kind, func(t *testing.T) {
			Default(obj)
			expectErrors(t, ValidateCreate(obj))
			// an update that changes nothing is valid too
			old := obj.DeepCopyObject()
			expectErrors(t, ValidateUpdate(obj, old))
			// the namespace rule follows the kind
			m := obj.(metav1.Object)
			if r.Namespaced {
				m.SetNamespace("")
				expectErrors(t, ValidateCreate(obj), want{"metadata.namespace", field.ErrorTypeRequired, ""})
			} else {
				m.SetNamespace("default")
				expectErrors(t, ValidateCreate(obj), want{"metadata.namespace", field.ErrorTypeForbidden, "not allowed on this type"})
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(p *corev1.Pod)
		want   want
	}{
		{"uppercase name", func(p *corev1.Pod) { p.Name = "Foo" }, want{"metadata.name", field.ErrorTypeInvalid, "a lowercase RFC 1123 subdomain must consist of"}},
		{"no name", func(p *corev1.Pod) { p.Name = "" }, want{"metadata.name", field.ErrorTypeRequired, "name or generateName is required"}},
		{"bad generateName", func(p *corev1.Pod) { p.GenerateName = "Web-" }, want{"metadata.generateName", field.ErrorTypeInvalid, "RFC 1123"}},
		{"bad namespace", func(p *corev1.Pod) { p.Namespace = "a.b" }, want{"metadata.namespace", field.ErrorTypeInvalid, "must not contain dots"}},
		{"bad label key", func(p *corev1.Pod) { p.Labels = map[string]string{"-x": "y"} }, want{"metadata.labels", field.ErrorTypeInvalid, "name part must consist of"}},
		{"bad label value", func(p *corev1.Pod) { p.Labels = map[string]string{"x": "a b"} }, want{"metadata.labels", field.ErrorTypeInvalid, "a valid label must be"}},
		{"bad annotation", func(p *corev1.Pod) { p.Annotations = map[string]string{"a/b/c": ""} }, want{"metadata.annotations", field.ErrorTypeInvalid, ""}},
		{"bad finalizer", func(p *corev1.Pod) { p.Finalizers = []string{"cleanup"} }, want{"metadata.finalizers[0]", field.ErrorTypeInvalid, "name is neither a standard finalizer name nor is it fully qualified"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := validPod()
			c.mutate(p)
			Default(p)
			expectErrors(t, ValidateCreate(p), c.want)
		})
	}
	// generateName with a trailing dash is fine once the name is generated
	p := validPod()
	p.GenerateName, p.Name = "web-", "web-x7k2p"
	Default(p)
	expectErrors(t, ValidateCreate(p))
}

func TestImmutableMetadata(t *testing.T) {
	old := validPod()
	Default(old)
	old.ResourceVersion = "5"
	cases := map[string]func(p *corev1.Pod){
		"metadata.name":              func(p *corev1.Pod) { p.Name = "other" },
		"metadata.namespace":         func(p *corev1.Pod) { p.Namespace = "other" },
		"metadata.uid":               func(p *corev1.Pod) { p.UID = "x" },
		"metadata.creationTimestamp": func(p *corev1.Pod) { p.CreationTimestamp = metav1.Unix(100, 0) },
	}
	for fld, mutate := range cases {
		p := old.DeepCopy()
		mutate(p)
		expectErrors(t, ValidateUpdate(p, old), want{fld, field.ErrorTypeInvalid, "field is immutable"})
	}
	// labels may change; a missing resourceVersion is the REST layer's business
	p := old.DeepCopy()
	p.Labels = map[string]string{"tier": "front"}
	p.ResourceVersion = ""
	expectErrors(t, ValidateUpdate(p, old))
}

func TestValidateUpdateKindMismatch(t *testing.T) {
	expectErrors(t, ValidateUpdate(validPod(), validService()), want{"<nil>", field.ErrorTypeInternal, ""})
}

// The error list renders as Kubernetes' 422 message.
func TestStatusMessage(t *testing.T) {
	p := validPod()
	p.Name = "Foo"
	p.Spec.Containers[0].Image = ""
	Default(p)
	err := apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Pod").GroupKind(), p.Name, ValidateCreate(p))
	msg := err.Error()
	for _, s := range []string{
		`Pod "Foo" is invalid: [`,
		`metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
		`spec.containers[0].image: Required value`,
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
}

func TestUnknownTypesAreIgnored(t *testing.T) {
	obj := &corev1.PodTemplate{}
	Default(obj)
	expectErrors(t, ValidateCreate(obj))
	expectErrors(t, ValidateUpdate(obj, obj.DeepCopy()))
}
