package validation

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestDeploymentDefaults(t *testing.T) {
	d := validDeployment()
	Default(d)
	s := d.Spec
	if *s.Replicas != 1 || s.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
		*s.Strategy.RollingUpdate.MaxSurge != intstr.FromString("25%") || *s.Strategy.RollingUpdate.MaxUnavailable != intstr.FromString("25%") ||
		*s.RevisionHistoryLimit != 10 || *s.ProgressDeadlineSeconds != 600 {
		t.Errorf("deployment defaults %+v", s)
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways || s.Template.Spec.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("pod template not defaulted")
	}
	if s.Template.Spec.Priority != nil || s.Template.Spec.ServiceAccountName != "" {
		t.Errorf("admission-time pod defaults leaked into the template")
	}

	rs := validReplicaSet()
	Default(rs)
	if *rs.Spec.Replicas != 1 {
		t.Errorf("replicaset replicas %d", *rs.Spec.Replicas)
	}
	ds := validDaemonSet()
	Default(ds)
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || *u.RollingUpdate.MaxUnavailable != intstr.FromInt32(1) ||
		*u.RollingUpdate.MaxSurge != intstr.FromInt32(0) || *ds.Spec.RevisionHistoryLimit != 10 {
		t.Errorf("daemonset defaults %+v", ds.Spec)
	}
}

func TestDeploymentValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(d *appsv1.Deployment)
		want   want
	}{
		{"no selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, want{"spec.selector", field.ErrorTypeRequired, ""}},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }, want{"spec.selector", field.ErrorTypeInvalid, "empty selector is invalid for deployment"}},
		{"selector mismatch", func(d *appsv1.Deployment) { d.Spec.Template.Labels = map[string]string{"app": "other"} },
			want{"spec.template.metadata.labels", field.ErrorTypeInvalid, "`selector` does not match template `labels`"}},
		{"bad selector operator", func(d *appsv1.Deployment) {
			d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Like"}}
		}, want{"spec.selector.matchExpressions[0].operator", field.ErrorTypeInvalid, "not a valid selector operator"}},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptrTo(int32(-1)) }, want{"spec.replicas", field.ErrorTypeInvalid, "must be greater than or equal to 0"}},
		{"restartPolicy", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			want{"spec.template.spec.restartPolicy", field.ErrorTypeNotSupported, `supported values: "Always"`}},
		{"activeDeadlineSeconds", func(d *appsv1.Deployment) { d.Spec.Template.Spec.ActiveDeadlineSeconds = ptrTo(int64(5)) },
			want{"spec.template.spec.activeDeadlineSeconds", field.ErrorTypeForbidden, "activeDeadlineSeconds in ReplicaSet is not Supported"}},
		{"container image", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "" },
			want{"spec.template.spec.containers[0].image", field.ErrorTypeRequired, ""}},
		{"bad strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "Blue" }, want{"spec.strategy.type", field.ErrorTypeNotSupported, ""}},
		{"recreate with rollingUpdate", func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{}}
		}, want{"spec.strategy.rollingUpdate", field.ErrorTypeForbidden, "may not be specified when strategy `type` is 'Recreate'"}},
		{"both zero", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptrTo(intstr.FromInt32(0)), MaxUnavailable: ptrTo(intstr.FromString("0%"))}
		}, want{"spec.strategy.rollingUpdate.maxUnavailable", field.ErrorTypeInvalid, "may not be 0 when `maxSurge` is 0"}},
		{"over 100%", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptrTo(intstr.FromString("150%"))}
		}, want{"spec.strategy.rollingUpdate.maxUnavailable", field.ErrorTypeInvalid, "must not be greater than 100%"}},
		{"bad percent", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptrTo(intstr.FromString("lots"))}
		}, want{"spec.strategy.rollingUpdate.maxSurge", field.ErrorTypeInvalid, "a valid percent string must be"}},
		{"progress deadline", func(d *appsv1.Deployment) {
			d.Spec.MinReadySeconds = 700
		}, want{"spec.progressDeadlineSeconds", field.ErrorTypeInvalid, "must be greater than minReadySeconds"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := validDeployment()
			c.mutate(d)
			Default(d)
			expectErrors(t, ValidateCreate(d), c.want)
		})
	}
}

func TestWorkloadUpdates(t *testing.T) {
	d := validDeployment()
	Default(d)
	nd := d.DeepCopy()
	nd.Spec.Replicas = ptrTo(int32(5))
	nd.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
	expectErrors(t, ValidateUpdate(nd, d))
	nd.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "v": "2"}}
	nd.Spec.Template.Labels["v"] = "2"
	expectErrors(t, ValidateUpdate(nd, d), want{"spec.selector", field.ErrorTypeInvalid, "field is immutable"})

	rs := validReplicaSet()
	Default(rs)
	nrs := rs.DeepCopy()
	nrs.Spec.Selector.MatchLabels = map[string]string{"app": "web"}
	expectErrors(t, ValidateUpdate(nrs, rs), want{"spec.selector", field.ErrorTypeInvalid, "field is immutable"})

	ds := validDaemonSet()
	Default(ds)
	nds := ds.DeepCopy()
	nds.Spec.Selector.MatchLabels = map[string]string{"app": "agent2"}
	nds.Spec.Template.Labels = map[string]string{"app": "agent2"}
	expectErrors(t, ValidateUpdate(nds, ds), want{"spec.selector", field.ErrorTypeInvalid, "field is immutable"})
}

func TestReplicaSetAndDaemonSetValidation(t *testing.T) {
	rs := validReplicaSet()
	rs.Spec.Selector = &metav1.LabelSelector{}
	Default(rs)
	expectErrors(t, ValidateCreate(rs), want{"spec.selector", field.ErrorTypeInvalid, "empty selector is invalid for deployment"})

	cases := []struct {
		name   string
		mutate func(ds *appsv1.DaemonSet)
		want   want
	}{
		{"selector mismatch", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Labels = nil },
			want{"spec.template.metadata.labels", field.ErrorTypeInvalid, "`selector` does not match template `labels`"}},
		{"empty selector", func(ds *appsv1.DaemonSet) { ds.Spec.Selector = &metav1.LabelSelector{} }, want{"spec.selector", field.ErrorTypeInvalid, "empty selector is invalid for daemonset"}},
		{"restartPolicy", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure },
			want{"spec.template.spec.restartPolicy", field.ErrorTypeNotSupported, ""}},
		{"surge and unavailable", func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxSurge: ptrTo(intstr.FromInt32(1))}
		}, want{"spec.updateStrategy.rollingUpdate.maxSurge", field.ErrorTypeInvalid, "may not be set when maxUnavailable is non-zero"}},
		{"both zero", func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptrTo(intstr.FromInt32(0))}
		}, want{"spec.updateStrategy.rollingUpdate.maxUnavailable", field.ErrorTypeRequired, "cannot be 0 when maxSurge is 0"}},
		{"bad strategy", func(ds *appsv1.DaemonSet) { ds.Spec.UpdateStrategy.Type = "Later" }, want{"spec.updateStrategy", field.ErrorTypeNotSupported, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := validDaemonSet()
			c.mutate(ds)
			Default(ds)
			expectErrors(t, ValidateCreate(ds), c.want)
		})
	}
}
