package validation

import (
	"fmt"
	"math"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// batch/v1 Job defaulting and validation, ported by hand from kubernetes
// pkg/apis/batch/v1/defaults.go, pkg/registry/batch/job/strategy.go
// (generateSelector) and pkg/apis/batch/validation.

const (
	maxParallelismForIndexedJob = 100000
	legacyJobNameLabel          = "job-name"
	legacyControllerUIDLabel    = "controller-uid"
)

func defaultJob(j *batchv1.Job) {
	s := &j.Spec
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = ptrTo(int32(1))
		s.Parallelism = ptrTo(int32(1))
	}
	if s.Parallelism == nil {
		s.Parallelism = ptrTo(int32(1))
	}
	if s.BackoffLimit == nil {
		if s.BackoffLimitPerIndex != nil {
			s.BackoffLimit = ptrTo(int32(math.MaxInt32))
		} else {
			s.BackoffLimit = ptrTo(int32(6))
		}
	}
	copyLabels := s.Template.Labels != nil && len(j.Labels) == 0
	if s.CompletionMode == nil {
		s.CompletionMode = ptrTo(batchv1.NonIndexedCompletion)
	}
	if s.Suspend == nil {
		s.Suspend = ptrTo(false)
	}
	if s.PodFailurePolicy != nil {
		for _, r := range s.PodFailurePolicy.Rules {
			for i := range r.OnPodConditions {
				if r.OnPodConditions[i].Status == "" {
					r.OnPodConditions[i].Status = corev1.ConditionTrue
				}
			}
		}
	}
	if s.PodReplacementPolicy == nil {
		if s.PodFailurePolicy != nil {
			s.PodReplacementPolicy = ptrTo(batchv1.Failed)
		} else {
			s.PodReplacementPolicy = ptrTo(batchv1.TerminatingOrFailed)
		}
	}
	if s.ManualSelector == nil || !*s.ManualSelector {
		generateJobSelector(j)
	}
	if copyLabels {
		// SetDefaults_Job shares the template's label map with the Job, so
		// the generated labels show on the Job too.
		j.Labels = make(map[string]string, len(s.Template.Labels))
		for k, v := range s.Template.Labels {
			j.Labels[k] = v
		}
	}
	defaultPodTemplate(&s.Template)
}

// generateJobSelector is the job strategy's generateSelector. It needs the
// Job's uid, so it does nothing until metadata.uid is set.
func generateJobSelector(j *batchv1.Job) {
	if j.UID == "" {
		return
	}
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for _, k := range []string{legacyJobNameLabel, batchv1.JobNameLabel} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = j.Name
		}
	}
	for _, k := range []string{legacyControllerUIDLabel, batchv1.ControllerUidLabel} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = string(j.UID)
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] = string(j.UID)
	}
}

func validateJob(j *batchv1.Job) field.ErrorList {
	errs := validateObjectMeta(&j.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
	errs = append(errs, validateGeneratedSelector(j)...)
	errs = append(errs, validateJobSpec(&j.Spec, specPath)...)
	if s := j.Spec; s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion && s.Completions != nil && *s.Completions > 0 {
		maxHostname := fmt.Sprintf("%s-%d", j.Name, *s.Completions-1)
		if len(validation.IsDNS1123Label(maxHostname)) > 0 {
			errs = append(errs, field.Invalid(metadataPath.Child("name"), j.Name, fmt.Sprintf("will not able to create pod with invalid DNS label: %s", maxHostname)))
		}
	}
	return errs
}

func validateHasLabel(m metav1.ObjectMeta, fldPath *field.Path, key, expected string) field.ErrorList {
	v, ok := m.Labels[key]
	if !ok {
		return field.ErrorList{field.Required(fldPath.Child("labels").Key(key), expected)}
	}
	if v != expected {
		return field.ErrorList{field.Invalid(fldPath.Child("labels").Key(key), m.Labels, fmt.Sprintf("must be '%s'", expected))}
	}
	return nil
}

func validateGeneratedSelector(j *batchv1.Job) field.ErrorList {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return nil
	}
	if j.Spec.Selector == nil {
		return nil // reported by validateJobSpec
	}
	var errs field.ErrorList
	if j.UID == "" {
		errs = append(errs, field.Required(metadataPath.Child("uid"), ""))
	}
	tmplPath := specPath.Child("template", "metadata")
	errs = append(errs, validateHasLabel(j.Spec.Template.ObjectMeta, tmplPath, legacyControllerUIDLabel, string(j.UID))...)
	errs = append(errs, validateHasLabel(j.Spec.Template.ObjectMeta, tmplPath, legacyJobNameLabel, j.Name)...)
	errs = append(errs, validateHasLabel(j.Spec.Template.ObjectMeta, tmplPath, batchv1.ControllerUidLabel, string(j.UID))...)
	errs = append(errs, validateHasLabel(j.Spec.Template.ObjectMeta, tmplPath, batchv1.JobNameLabel, j.Name)...)
	expected := labels.SelectorFromSet(labels.Set{batchv1.ControllerUidLabel: string(j.UID)})
	if !expected.Matches(labels.Set(j.Spec.Selector.MatchLabels)) {
		errs = append(errs, field.Invalid(specPath.Child("selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	return errs
}

func validateJobSpec(spec *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.Parallelism != nil {
		errs = append(errs, validateNonnegative(int64(*spec.Parallelism), fldPath.Child("parallelism"))...)
	}
	if spec.Completions != nil {
		errs = append(errs, validateNonnegative(int64(*spec.Completions), fldPath.Child("completions"))...)
	}
	if spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, validateNonnegative(*spec.ActiveDeadlineSeconds, fldPath.Child("activeDeadlineSeconds"))...)
	}
	if spec.BackoffLimit != nil {
		errs = append(errs, validateNonnegative(int64(*spec.BackoffLimit), fldPath.Child("backoffLimit"))...)
	}
	if spec.TTLSecondsAfterFinished != nil {
		errs = append(errs, validateNonnegative(int64(*spec.TTLSecondsAfterFinished), fldPath.Child("ttlSecondsAfterFinished"))...)
	}
	indexed := false
	if spec.CompletionMode != nil {
		switch *spec.CompletionMode {
		case batchv1.NonIndexedCompletion:
		case batchv1.IndexedCompletion:
			indexed = true
			if spec.Completions == nil {
				errs = append(errs, field.Required(fldPath.Child("completions"), fmt.Sprintf("when completion mode is %s", batchv1.IndexedCompletion)))
			}
			if spec.Parallelism != nil && *spec.Parallelism > maxParallelismForIndexedJob {
				errs = append(errs, field.Invalid(fldPath.Child("parallelism"), *spec.Parallelism,
					fmt.Sprintf("must be less than or equal to %d when completion mode is %s", maxParallelismForIndexedJob, batchv1.IndexedCompletion)))
			}
		default:
			errs = append(errs, field.NotSupported(fldPath.Child("completionMode"), *spec.CompletionMode,
				[]batchv1.CompletionMode{batchv1.NonIndexedCompletion, batchv1.IndexedCompletion}))
		}
	}
	if spec.BackoffLimitPerIndex != nil {
		errs = append(errs, validateNonnegative(int64(*spec.BackoffLimitPerIndex), fldPath.Child("backoffLimitPerIndex"))...)
		if !indexed {
			errs = append(errs, field.Forbidden(fldPath.Child("backoffLimitPerIndex"), fmt.Sprintf("requires indexed completion mode")))
		}
	}
	if spec.MaxFailedIndexes != nil {
		if spec.BackoffLimitPerIndex == nil {
			errs = append(errs, field.Required(fldPath.Child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
		}
		if spec.Completions != nil && *spec.MaxFailedIndexes > *spec.Completions {
			errs = append(errs, field.Invalid(fldPath.Child("maxFailedIndexes"), *spec.MaxFailedIndexes, "must be less than or equal to completions"))
		}
	}
	if p := spec.PodReplacementPolicy; p != nil {
		switch *p {
		case batchv1.TerminatingOrFailed, batchv1.Failed:
		default:
			errs = append(errs, field.NotSupported(fldPath.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.Failed, batchv1.TerminatingOrFailed}))
		}
		if spec.PodFailurePolicy != nil && *p != batchv1.Failed {
			errs = append(errs, field.NotSupported(fldPath.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.Failed}))
		}
	}

	if spec.Selector == nil {
		errs = append(errs, field.Required(fldPath.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(spec.Selector, metav1validation.LabelSelectorValidationOptions{}, fldPath.Child("selector"))...)
	}
	if selector, err := metav1.LabelSelectorAsSelector(spec.Selector); err == nil && !selector.Matches(labels.Set(spec.Template.Labels)) {
		errs = append(errs, field.Invalid(fldPath.Child("template", "metadata", "labels"), spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, validatePodTemplateSpec(&spec.Template, fldPath.Child("template"))...)
	if rp := spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		errs = append(errs, field.NotSupported(fldPath.Child("template", "spec", "restartPolicy"), rp,
			[]corev1.RestartPolicy{corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}))
	}
	return errs
}

// validateJobUpdate is ValidateJob plus ValidateJobUpdate: selector,
// completionMode, podFailurePolicy and (unless the job is suspended and was
// never started) the pod template are immutable; completions of Indexed jobs
// may only change together with parallelism.
func validateJobUpdate(j, old *batchv1.Job) field.ErrorList {
	errs := validateObjectMetaUpdate(&j.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, validateGeneratedSelector(j)...)
	errs = append(errs, validateJobSpec(&j.Spec, specPath)...)
	s, o := &j.Spec, &old.Spec
	errs = append(errs, validateImmutable(s.Selector, o.Selector, specPath.Child("selector"))...)
	errs = append(errs, validateImmutable(s.CompletionMode, o.CompletionMode, specPath.Child("completionMode"))...)
	errs = append(errs, validateImmutable(s.PodFailurePolicy, o.PodFailurePolicy, specPath.Child("podFailurePolicy"))...)
	errs = append(errs, validateImmutable(s.BackoffLimitPerIndex, o.BackoffLimitPerIndex, specPath.Child("backoffLimitPerIndex"))...)

	oldTemplate := &o.Template
	if o.Suspend != nil && *o.Suspend && old.Status.StartTime == nil {
		// mutable scheduling directives of a suspended job that never started
		oldTemplate = o.Template.DeepCopy()
		if s.Template.Spec.Affinity == nil && oldTemplate.Spec.Affinity != nil {
			oldTemplate.Spec.Affinity.NodeAffinity = nil
			if equality.Semantic.DeepEqual(*oldTemplate.Spec.Affinity, corev1.Affinity{}) {
				oldTemplate.Spec.Affinity = nil
			}
		} else if s.Template.Spec.Affinity != nil {
			if oldTemplate.Spec.Affinity == nil {
				oldTemplate.Spec.Affinity = &corev1.Affinity{}
			}
			oldTemplate.Spec.Affinity.NodeAffinity = s.Template.Spec.Affinity.NodeAffinity
		}
		oldTemplate.Spec.NodeSelector = s.Template.Spec.NodeSelector
		oldTemplate.Spec.Tolerations = s.Template.Spec.Tolerations
		oldTemplate.Annotations = s.Template.Annotations
		oldTemplate.Labels = s.Template.Labels
		oldTemplate.Spec.SchedulingGates = s.Template.Spec.SchedulingGates
	}
	errs = append(errs, validateImmutable(&s.Template, oldTemplate, specPath.Child("template"))...)

	indexed := s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion
	if !indexed {
		errs = append(errs, validateImmutable(s.Completions, o.Completions, specPath.Child("completions"))...)
	} else if !equality.Semantic.DeepEqual(s.Completions, o.Completions) && s.Completions != nil &&
		(s.Parallelism == nil || *s.Completions != *s.Parallelism) {
		errs = append(errs, field.Invalid(specPath.Child("completions"), s.Completions, "can only be modified in tandem with spec.parallelism"))
	}
	return errs
}
