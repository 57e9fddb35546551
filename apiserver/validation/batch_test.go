package validation

import (
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestJobDefaults(t *testing.T) {
	j := validJob()
	Default(j)
	s := j.Spec
	if *s.Completions != 1 || *s.Parallelism != 1 || *s.BackoffLimit != 6 || *s.CompletionMode != batchv1.NonIndexedCompletion ||
		*s.Suspend || *s.PodReplacementPolicy != batchv1.TerminatingOrFailed || s.ManualSelector != nil {
		t.Errorf("job defaults %+v", s)
	}
	uid := string(j.UID)
	for k, v := range map[string]string{"controller-uid": uid, "batch.kubernetes.io/controller-uid": uid, "job-name": "pi", "batch.kubernetes.io/job-name": "pi", "app": "batch"} {
		if s.Template.Labels[k] != v {
			t.Errorf("template label %s = %q, want %q", k, s.Template.Labels[k], v)
		}
		if j.Labels[k] != v {
			t.Errorf("job label %s = %q, want %q", k, j.Labels[k], v)
		}
	}
	if len(s.Selector.MatchLabels) != 1 || s.Selector.MatchLabels["batch.kubernetes.io/controller-uid"] != uid {
		t.Errorf("selector %+v", s.Selector)
	}
	// parallelism alone leaves completions unset
	j = validJob()
	j.Spec.Parallelism = ptrTo(int32(3))
	Default(j)
	if j.Spec.Completions != nil {
		t.Errorf("completions %v", *j.Spec.Completions)
	}
	expectErrors(t, ValidateCreate(j))
}

func TestJobValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(j *batchv1.Job)
		want   want
	}{
		{"restartPolicy Always", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways },
			want{"spec.template.spec.restartPolicy", field.ErrorTypeNotSupported, `supported values: "OnFailure", "Never"`}},
		{"negative parallelism", func(j *batchv1.Job) { j.Spec.Parallelism = ptrTo(int32(-1)) }, want{"spec.parallelism", field.ErrorTypeInvalid, "must be greater than or equal to 0"}},
		{"negative backoffLimit", func(j *batchv1.Job) { j.Spec.BackoffLimit = ptrTo(int32(-1)) }, want{"spec.backoffLimit", field.ErrorTypeInvalid, ""}},
		{"bad completionMode", func(j *batchv1.Job) { j.Spec.CompletionMode = ptrTo(batchv1.CompletionMode("Sometimes")) }, want{"spec.completionMode", field.ErrorTypeNotSupported, ""}},
		{"indexed without completions", func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptrTo(batchv1.IndexedCompletion)
			j.Spec.Parallelism = ptrTo(int32(2))
		}, want{"spec.completions", field.ErrorTypeRequired, "when completion mode is Indexed"}},
		{"wrong generated label", func(j *batchv1.Job) { j.Spec.Template.Labels = map[string]string{"job-name": "other"} },
			want{"spec.template.metadata.labels[job-name]", field.ErrorTypeInvalid, "must be 'pi'"}},
		{"manual selector required", func(j *batchv1.Job) { j.Spec.ManualSelector = ptrTo(true) }, want{"spec.selector", field.ErrorTypeRequired, ""}},
		{"manual selector mismatch", func(j *batchv1.Job) {
			j.Spec.ManualSelector = ptrTo(true)
			j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
		}, want{"spec.template.metadata.labels", field.ErrorTypeInvalid, "`selector` does not match template `labels`"}},
		{"user selector without manualSelector", func(j *batchv1.Job) {
			j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: "someone-else"}}
		}, want{"spec.selector", field.ErrorTypeInvalid, "`selector` not auto-generated"}},
		{"no uid", func(j *batchv1.Job) { j.UID = "" }, want{"spec.selector", field.ErrorTypeRequired, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := validJob()
			c.mutate(j)
			Default(j)
			expectErrors(t, ValidateCreate(j), c.want)
		})
	}
	// a manual selector that matches is fine
	j := validJob()
	j.Spec.ManualSelector = ptrTo(true)
	j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "batch"}}
	Default(j)
	expectErrors(t, ValidateCreate(j))
}

func TestJobUpdate(t *testing.T) {
	old := validJob()
	Default(old)
	j := old.DeepCopy()
	j.Spec.Parallelism = ptrTo(int32(4))
	j.Spec.ActiveDeadlineSeconds = ptrTo(int64(60))
	j.Spec.Suspend = ptrTo(true)
	expectErrors(t, ValidateUpdate(j, old))

	j = old.DeepCopy()
	j.Spec.Template.Spec.Containers[0].Image = "perl:5"
	expectErrors(t, ValidateUpdate(j, old), want{"spec.template", field.ErrorTypeInvalid, "field is immutable"})
	j = old.DeepCopy()
	j.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}
	expectErrors(t, ValidateUpdate(j, old), want{"spec.selector", field.ErrorTypeInvalid, "field is immutable"})
	j = old.DeepCopy()
	j.Spec.Completions = ptrTo(int32(3))
	expectErrors(t, ValidateUpdate(j, old), want{"spec.completions", field.ErrorTypeInvalid, "field is immutable"})

	// a suspended job that never started may change its scheduling directives
	old.Spec.Suspend = ptrTo(true)
	j = old.DeepCopy()
	j.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "a"}
	j.Spec.Template.Annotations = map[string]string{"x": "y"}
	expectErrors(t, ValidateUpdate(j, old))
	old.Status.StartTime = ptrTo(metav1.Now())
	expectErrors(t, ValidateUpdate(j, old), want{"spec.template", field.ErrorTypeInvalid, "field is immutable"})

	// Indexed jobs scale completions with parallelism
	idx := validJob()
	idx.Spec.CompletionMode = ptrTo(batchv1.IndexedCompletion)
	idx.Spec.Completions, idx.Spec.Parallelism = ptrTo(int32(2)), ptrTo(int32(2))
	Default(idx)
	expectErrors(t, ValidateCreate(idx))
	j = idx.DeepCopy()
	j.Spec.Completions, j.Spec.Parallelism = ptrTo(int32(4)), ptrTo(int32(4))
	expectErrors(t, ValidateUpdate(j, idx))
	j.Spec.Parallelism = ptrTo(int32(3))
	expectErrors(t, ValidateUpdate(j, idx), want{"spec.completions", field.ErrorTypeInvalid, "can only be modified in tandem with spec.parallelism"})
}
