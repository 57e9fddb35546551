package deployment

import (
	"context"
	"fmt"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
)

// syncRolloutStatus writes the status of a rollout, with the Progressing
// condition Kubernetes keeps: NewReplicaSetAvailable once complete,
// ReplicaSetUpdated whenever there was progress, ProgressDeadlineExceeded
// after progressDeadlineSeconds without any.
func (c *Controller) syncRolloutStatus(ctx context.Context, s *state, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	d := s.d
	status := calculateStatus(allRSs, newRS, d)
	if !hasProgressDeadline(d) {
		status.Conditions = withoutCondition(status.Conditions, appsv1.DeploymentProgressing)
	}
	now := time.Now()
	cur := getCondition(d.Status, appsv1.DeploymentProgressing)
	complete := status.Replicas == status.UpdatedReplicas && cur != nil && cur.Reason == reasonNewRSAvailable
	if hasProgressDeadline(d) && !complete {
		subject := fmt.Sprintf("Deployment %q", d.Name)
		if newRS != nil {
			subject = fmt.Sprintf("ReplicaSet %q", newRS.Name)
		}
		switch {
		case deploymentComplete(d, &status):
			setCondition(&status, newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonNewRSAvailable, subject+" has successfully progressed.", now))
		case deploymentProgressing(d, &status):
			// Progress refreshes lastUpdateTime even with an unchanged
			// reason, which setCondition would not do.
			cond := newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonReplicaSetUpdated, subject+" is progressing.", now)
			if cur != nil {
				if cur.Status == v1.ConditionTrue {
					cond.LastTransitionTime = cur.LastTransitionTime
				}
				status.Conditions = withoutCondition(status.Conditions, appsv1.DeploymentProgressing)
			}
			setCondition(&status, cond)
		case deploymentTimedOut(d, &status, now):
			setCondition(&status, newCondition(appsv1.DeploymentProgressing, v1.ConditionFalse, reasonTimedOut, subject+" has timed out progressing.", now))
		}
	}
	if failure := replicaFailure(allRSs, newRS); failure != nil {
		setCondition(&status, *failure)
	} else {
		status.Conditions = withoutCondition(status.Conditions, appsv1.DeploymentReplicaFailure)
	}
	if reflect.DeepEqual(d.Status, status) {
		c.requeueStuckDeployment(s, status, now)
		return nil
	}
	d.Status = status
	return c.updateStatus(ctx, d)
}

// replicaFailure lifts a ReplicaFailure condition of the new ReplicaSet, or
// else of an old one, into the Deployment.
func replicaFailure(allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) *appsv1.DeploymentCondition {
	for _, rs := range append([]*appsv1.ReplicaSet{newRS}, allRSs...) {
		if rs == nil {
			continue
		}
		for _, c := range rs.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure {
				return &appsv1.DeploymentCondition{
					Type:               appsv1.DeploymentConditionType(c.Type),
					Status:             c.Status,
					LastTransitionTime: c.LastTransitionTime,
					LastUpdateTime:     c.LastTransitionTime,
					Reason:             c.Reason,
					Message:            c.Message,
				}
			}
		}
	}
	return nil
}

// requeueStuckDeployment schedules a progress check for when the deadline
// of a rollout without progress passes: no event would trigger one.
func (c *Controller) requeueStuckDeployment(s *state, status appsv1.DeploymentStatus, now time.Time) {
	d := s.d
	cur := getCondition(d.Status, appsv1.DeploymentProgressing)
	if !hasProgressDeadline(d) || cur == nil || deploymentComplete(d, &status) || cur.Reason == reasonTimedOut {
		return
	}
	after := cur.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second).Sub(now)
	// A little past the deadline, which must be strictly passed.
	c.queue.AddAfter(s.key, max(after, 0)+100*time.Millisecond)
}
