package deployment

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
)

// rolloutRecreate scales every old ReplicaSet to zero, waits until none of
// their pods is left (terminating ones included), and only then creates or
// scales up the new ReplicaSet: old and new pods never run together.
func (c *Controller) rolloutRecreate(ctx context.Context, s *state) error {
	// The new ReplicaSet is not created yet: it would be sized at once.
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, s, false)
	if err != nil {
		return err
	}
	allRSs := append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)

	scaledDown := false
	for _, rs := range filterActive(oldRSs) {
		scaled, _, err := c.scaleReplicaSetAndRecordEvent(ctx, s, rs, 0)
		if err != nil {
			return err
		}
		scaledDown = scaledDown || scaled
	}
	if scaledDown || oldPodsRunning(s, newRS, oldRSs) {
		return c.syncRolloutStatus(ctx, s, allRSs, newRS)
	}
	if newRS == nil {
		if newRS, oldRSs, err = c.getAllReplicaSetsAndSyncRevision(ctx, s, true); err != nil {
			return err
		}
		allRSs = append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)
	}
	if _, _, err := c.scaleReplicaSetAndRecordEvent(ctx, s, newRS, *s.d.Spec.Replicas); err != nil {
		return err
	}
	if deploymentComplete(s.d, &s.d.Status) {
		if err := c.cleanupDeployment(ctx, s, oldRSs); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, s, allRSs, newRS)
}

// oldPodsRunning reports whether an old ReplicaSet may still have a pod: one
// in the cache that has not finished, one its status counts, or one its
// controller may still be creating (it has not acted on the scale-down).
func oldPodsRunning(s *state, newRS *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet) bool {
	for _, rs := range oldRSs {
		if rs.Status.Replicas > 0 || rs.Status.ObservedGeneration < rs.Generation {
			return true
		}
	}
	for uid, pods := range s.pods {
		if newRS != nil && uid == newRS.UID {
			continue
		}
		for _, p := range pods {
			if p.Status.Phase != v1.PodFailed && p.Status.Phase != v1.PodSucceeded {
				return true
			}
		}
	}
	return false
}
