package deployment

import (
	"context"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
)

// rolloutRolling moves a Deployment towards its template one step: scale
// the new ReplicaSet up as far as maxSurge allows, else scale old ones down
// as far as maxUnavailable allows, else (the rollout is done) clean up.
func (c *Controller) rolloutRolling(ctx context.Context, s *state) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, s, true)
	if err != nil {
		return err
	}
	allRSs := append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)

	scaledUp, err := c.reconcileNewReplicaSet(ctx, s, allRSs, newRS)
	if err != nil {
		return err
	}
	if scaledUp {
		return c.syncRolloutStatus(ctx, s, allRSs, newRS)
	}
	scaledDown, err := c.reconcileOldReplicaSets(ctx, s, allRSs, filterActive(oldRSs), newRS)
	if err != nil {
		return err
	}
	if scaledDown {
		return c.syncRolloutStatus(ctx, s, allRSs, newRS)
	}
	if deploymentComplete(s.d, &s.d.Status) {
		if err := c.cleanupDeployment(ctx, s, oldRSs); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, s, allRSs, newRS)
}

func (c *Controller) reconcileNewReplicaSet(ctx context.Context, s *state, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	want := *s.d.Spec.Replicas
	switch {
	case replicas(newRS) == want:
		return false, nil
	case replicas(newRS) > want:
		scaled, _, err := c.scaleReplicaSetAndRecordEvent(ctx, s, newRS, want)
		return scaled, err
	}
	n, err := newRSNewReplicas(s, allRSs, newRS)
	if err != nil {
		return false, err
	}
	scaled, _, err := c.scaleReplicaSetAndRecordEvent(ctx, s, newRS, n)
	return scaled, err
}

// reconcileOldReplicaSets scales old ReplicaSets down: first their
// unavailable pods (removing them costs no availability), then available
// ones while more than spec.replicas - maxUnavailable stay available.
func (c *Controller) reconcileOldReplicaSets(ctx context.Context, s *state, allRSs, oldRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	if sumReplicas(oldRSs) == 0 {
		return false, nil
	}
	d := s.d
	minAvailable := *d.Spec.Replicas - maxUnavailable(d)
	// Unavailable new pods must not let old pods go: if the new template
	// is broken, the old pods are all that serves.
	newUnavailable := replicas(newRS) - s.available(newRS)
	maxScaledDown := sumReplicas(allRSs) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false, nil
	}
	oldRSs, cleaned, err := c.cleanupUnhealthyReplicas(ctx, s, oldRSs, maxScaledDown)
	if err != nil {
		return false, err
	}
	allRSs = append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)
	scaled, err := c.scaleDownOldReplicaSetsForRollingUpdate(ctx, s, allRSs, oldRSs)
	if err != nil {
		return false, err
	}
	return cleaned+scaled > 0, nil
}

// cleanupUnhealthyReplicas removes up to maxCleanup unavailable pods from
// old ReplicaSets, oldest first. The replicaset controller deletes
// unscheduled, pending and not-ready pods before ready ones, so the
// scale-down takes exactly those.
func (c *Controller) cleanupUnhealthyReplicas(ctx context.Context, s *state, oldRSs []*appsv1.ReplicaSet, maxCleanup int32) ([]*appsv1.ReplicaSet, int32, error) {
	sort.Sort(byCreationTimestamp(oldRSs))
	var total int32
	for i, rs := range oldRSs {
		if total >= maxCleanup {
			break
		}
		unhealthy := replicas(rs) - s.available(rs)
		if replicas(rs) == 0 || unhealthy <= 0 {
			continue
		}
		n := min(maxCleanup-total, unhealthy)
		_, updated, err := c.scaleReplicaSetAndRecordEvent(ctx, s, rs, replicas(rs)-n)
		if err != nil {
			return nil, total, err
		}
		total += n
		oldRSs[i] = updated
	}
	return oldRSs, total, nil
}

// scaleDownOldReplicaSetsForRollingUpdate removes old pods, oldest
// ReplicaSet first, while the available pods stay at or above
// spec.replicas - maxUnavailable even if every removed pod was available.
func (c *Controller) scaleDownOldReplicaSetsForRollingUpdate(ctx context.Context, s *state, allRSs, oldRSs []*appsv1.ReplicaSet) (int32, error) {
	d := s.d
	minAvailable := *d.Spec.Replicas - maxUnavailable(d)
	available := s.sumAvailable(allRSs)
	if available <= minAvailable {
		return 0, nil
	}
	sort.Sort(byCreationTimestamp(oldRSs))
	budget := available - minAvailable
	var total int32
	for _, rs := range oldRSs {
		if total >= budget {
			break
		}
		if replicas(rs) == 0 {
			continue
		}
		n := min(replicas(rs), budget-total)
		if _, _, err := c.scaleReplicaSetAndRecordEvent(ctx, s, rs, replicas(rs)-n); err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}
