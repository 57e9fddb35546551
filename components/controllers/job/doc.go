// Package job is the controller-manager's job controller: it runs a Job's
// pods to completion as Kubernetes' does (batch/v1 as of 1.31).
//
// NonIndexed jobs keep min(parallelism, completions - succeeded) pods
// active; Indexed jobs give each pod a completion index (annotation, label,
// hostname and JOB_COMPLETION_INDEX) and complete when every index has
// succeeded. Failed pods count against backoffLimit, and replacements wait
// out Kubernetes' pod-failure backoff (10s doubling per failure since the
// last success, at most 6 minutes). activeDeadlineSeconds and suspend are
// honoured.
//
// Pods are counted through the batch.kubernetes.io/job-tracking finalizer:
// a finished pod's UID is first written to status.uncountedTerminatedPods,
// then its finalizer is removed, then it moves into status.succeeded or
// status.failed, so a pod is counted exactly once even if it is deleted
// or the controller's leader changes in between. A pod deleted before it
// finished counts as failed (unless the job is suspended), which is what
// Kubernetes did before JobPodReplacementPolicy; synod's kubelets do not
// mark deleted pods Failed themselves.
//
// Finishing takes two steps, as in Kubernetes 1.31: FailureTarget or
// SuccessCriteriaMet first, then, once every pod is counted and none is
// active, Failed (BackoffLimitExceeded, DeadlineExceeded) or Complete.
package job
