package printers

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func template(labels map[string]string, containers ...corev1.Container) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: containers}}
}

func TestDeploymentRows(t *testing.T) {
	sel := map[string]string{"k8s-app": "kube-dns"}
	coredns := &appsv1.Deployment{ObjectMeta: objMeta("coredns"),
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: template(sel, corev1.Container{Name: "coredns", Image: "registry.k8s.io/coredns/coredns:v1.11.3"})},
		Status: appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}}
	rolling := &appsv1.Deployment{ObjectMeta: objMeta("web"),
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"frontend"}}}},
			Template: template(map[string]string{"app": "web", "tier": "frontend"},
				corev1.Container{Name: "nginx", Image: "nginx:1.27"}, corev1.Container{Name: "sidecar", Image: "busybox:1.36"})},
		Status: appsv1.DeploymentStatus{Replicas: 4, ReadyReplicas: 1, UpdatedReplicas: 2, AvailableReplicas: 1}}
	fresh := &appsv1.Deployment{ObjectMeta: objMeta("fresh"),
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "fresh"}},
			Template: template(map[string]string{"app": "fresh"}, corev1.Container{Name: "app", Image: "app:v1"})}}
	fresh.CreationTimestamp = ago(3 * time.Second)
	checkRows(t, "Deployment", []rowCase{
		{"coredns", coredns, []interface{}{"coredns", "2/2", int64(2), int64(2), "10d", "coredns", "registry.k8s.io/coredns/coredns:v1.11.3", "k8s-app=kube-dns"}},
		{"rolling out", rolling, []interface{}{"web", "1/3", int64(2), int64(1), "10d", "nginx,sidecar", "nginx:1.27,busybox:1.36", "app=web,tier in (frontend)"}},
		{"replicas defaulted", fresh, []interface{}{"fresh", "0/1", int64(0), int64(0), "3s", "app", "app:v1", "app=fresh"}},
	})
}

func TestReplicaSetRows(t *testing.T) {
	sel := map[string]string{"k8s-app": "kube-dns", "pod-template-hash": "668d6bf9bc"}
	rs := &appsv1.ReplicaSet{ObjectMeta: objMeta("coredns-668d6bf9bc"),
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: template(sel, corev1.Container{Name: "coredns", Image: "registry.k8s.io/coredns/coredns:v1.11.3"})},
		Status: appsv1.ReplicaSetStatus{Replicas: 2, ReadyReplicas: 1}}
	old := &appsv1.ReplicaSet{ObjectMeta: objMeta("web-5d8f7c9b4"),
		Spec:   appsv1.ReplicaSetSpec{Replicas: ptr(int32(0)), Template: template(nil, corev1.Container{Name: "nginx", Image: "nginx:1.25"})},
		Status: appsv1.ReplicaSetStatus{}}
	checkRows(t, "ReplicaSet", []rowCase{
		{"coredns", rs, []interface{}{"coredns-668d6bf9bc", int64(2), int64(2), int64(1), "10d", "coredns", "registry.k8s.io/coredns/coredns:v1.11.3", "k8s-app=kube-dns,pod-template-hash=668d6bf9bc"}},
		{"scaled down, no selector", old, []interface{}{"web-5d8f7c9b4", int64(0), int64(0), int64(0), "10d", "nginx", "nginx:1.25", "<none>"}},
	})
}

func TestDaemonSetRows(t *testing.T) {
	sel := map[string]string{"k8s-app": "kube-proxy"}
	proxy := &appsv1.DaemonSet{ObjectMeta: objMeta("kube-proxy"),
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
				Containers:   []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.32.2"}}}}},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, UpdatedNumberScheduled: 3, NumberAvailable: 2}}
	noSel := &appsv1.DaemonSet{ObjectMeta: objMeta("agent"),
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: template(map[string]string{"app": "agent"}, corev1.Container{Name: "agent", Image: "agent:2"})}}
	checkRows(t, "DaemonSet", []rowCase{
		{"kube-proxy", proxy, []interface{}{"kube-proxy", int64(3), int64(3), int64(2), int64(3), int64(2), "kubernetes.io/os=linux", "10d", "kube-proxy", "registry.k8s.io/kube-proxy:v1.32.2", "k8s-app=kube-proxy"}},
		{"no node selector", noSel, []interface{}{"agent", int64(0), int64(0), int64(0), int64(0), int64(0), "<none>", "10d", "agent", "agent:2", "app=agent"}},
	})
}

func TestJobRows(t *testing.T) {
	job := func(name string, spec batchv1.JobSpec, status batchv1.JobStatus) *batchv1.Job {
		spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "5f1c"}}
		spec.Template = template(nil, corev1.Container{Name: "pi", Image: "perl:5.34.0"})
		return &batchv1.Job{ObjectMeta: objMeta(name), Spec: spec, Status: status}
	}
	cond := func(t batchv1.JobConditionType) []batchv1.JobCondition {
		return []batchv1.JobCondition{{Type: t, Status: corev1.ConditionTrue}}
	}
	complete := job("pi", batchv1.JobSpec{Completions: ptr(int32(1)), Parallelism: ptr(int32(1))},
		batchv1.JobStatus{Succeeded: 1, StartTime: agoPtr(10*day + time.Minute), CompletionTime: agoPtr(10*day + 52*time.Second),
			Conditions: append(cond(batchv1.JobSuccessCriteriaMet), cond(batchv1.JobComplete)...)})
	runningJob := job("work-queue", batchv1.JobSpec{Parallelism: ptr(int32(2))},
		batchv1.JobStatus{Active: 2, StartTime: agoPtr(5 * time.Minute)})
	indexed := job("indexed", batchv1.JobSpec{Completions: ptr(int32(5)), Parallelism: ptr(int32(3))},
		batchv1.JobStatus{Active: 3, Succeeded: 2, StartTime: agoPtr(4*time.Minute + 30*time.Second)})
	failed := job("fails", batchv1.JobSpec{Completions: ptr(int32(1)), BackoffLimit: ptr(int32(0))},
		batchv1.JobStatus{Failed: 1, StartTime: agoPtr(2 * time.Hour),
			Conditions: append(cond(batchv1.JobFailureTarget), cond(batchv1.JobFailed)...)})
	suspended := job("suspended", batchv1.JobSpec{Completions: ptr(int32(3)), Suspend: ptr(true)},
		batchv1.JobStatus{Conditions: cond(batchv1.JobSuspended)})
	deleting := job("deleting", batchv1.JobSpec{Completions: ptr(int32(1))}, batchv1.JobStatus{StartTime: agoPtr(time.Minute)})
	deleting.DeletionTimestamp = agoPtr(time.Second)
	checkRows(t, "Job", []rowCase{
		{"complete", complete, []interface{}{"pi", "Complete", "1/1", "8s", "10d", "pi", "perl:5.34.0", "batch.kubernetes.io/controller-uid=5f1c"}},
		{"running work queue", runningJob, []interface{}{"work-queue", "Running", "0/1 of 2", "5m", "10d", "pi", "perl:5.34.0", "batch.kubernetes.io/controller-uid=5f1c"}},
		{"running indexed", indexed, []interface{}{"indexed", "Running", "2/5", "4m30s", "10d", "pi", "perl:5.34.0", "batch.kubernetes.io/controller-uid=5f1c"}},
		{"failed", failed, []interface{}{"fails", "Failed", "0/1", "120m", "10d", "pi", "perl:5.34.0", "batch.kubernetes.io/controller-uid=5f1c"}},
		{"suspended", suspended, []interface{}{"suspended", "Suspended", "0/3", "", "10d", "pi", "perl:5.34.0", "batch.kubernetes.io/controller-uid=5f1c"}},
		{"terminating", deleting, []interface{}{"deleting", "Terminating", "0/1", "60s", "10d", "pi", "perl:5.34.0", "batch.kubernetes.io/controller-uid=5f1c"}},
	})
}
