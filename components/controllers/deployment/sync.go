package deployment

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"synod/components/controller"
)

// syncStatusOnly refreshes the status of a Deployment being deleted.
func (c *Controller) syncStatusOnly(ctx context.Context, s *state) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, s, false)
	if err != nil {
		return err
	}
	return c.syncDeploymentStatus(ctx, s, append(oldRSs, newRS), newRS)
}

// syncScale handles a paused Deployment and a scaling event: it resizes the
// ReplicaSets (proportionally if several are active) and starts no rollout.
func (c *Controller) syncScale(ctx context.Context, s *state) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, s, false)
	if err != nil {
		return err
	}
	if err := c.scale(ctx, s, newRS, oldRSs); err != nil {
		return err
	}
	if s.d.Spec.Paused {
		if err := c.cleanupDeployment(ctx, s, oldRSs); err != nil {
			return err
		}
	}
	return c.syncDeploymentStatus(ctx, s, append(oldRSs, newRS), newRS)
}

// checkPausedConditions records pausing and resuming in the Progressing
// condition, so a Deployment paused for longer than its deadline is not
// declared failed when it resumes.
func (c *Controller) checkPausedConditions(ctx context.Context, d *appsv1.Deployment) error {
	if !hasProgressDeadline(d) {
		return nil
	}
	cond := getCondition(d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == reasonTimedOut {
		return nil // a reported failure stays reported
	}
	pausedCond := cond != nil && cond.Reason == reasonPaused
	now := time.Now()
	switch {
	case d.Spec.Paused && !pausedCond:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionUnknown, reasonPaused, "Deployment is paused", now))
	case !d.Spec.Paused && pausedCond:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionUnknown, reasonResumed, "Deployment is resumed", now))
	default:
		return nil
	}
	return c.updateStatus(ctx, d)
}

// isScalingEvent reports whether spec.replicas changed since the active
// ReplicaSets were last sized (their desired-replicas annotation differs).
func (c *Controller) isScalingEvent(s *state) bool {
	newRS := findNewReplicaSet(s.d, s.rsList)
	all := append(findOldReplicaSets(s.d, s.rsList), newRS)
	for _, rs := range filterActive(all) {
		if desired, ok := intAnnotation(rs, DesiredReplicasAnnotation); ok && desired != *s.d.Spec.Replicas {
			return true
		}
	}
	return false
}

// getAllReplicaSetsAndSyncRevision returns the new ReplicaSet (created if
// create is set and it does not exist) and the old ones, with the new one's
// revision (and the Deployment's) brought up to date.
func (c *Controller) getAllReplicaSetsAndSyncRevision(ctx context.Context, s *state, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	oldRSs := findOldReplicaSets(s.d, s.rsList)
	newRS, err := c.getNewReplicaSet(ctx, s, oldRSs, create)
	if err != nil {
		return nil, nil, err
	}
	return newRS, oldRSs, nil
}

func (c *Controller) getNewReplicaSet(ctx context.Context, s *state, oldRSs []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	d := s.d
	existing := findNewReplicaSet(d, s.rsList)
	newRevision := strconv.FormatInt(maxRevision(oldRSs)+1, 10)
	now := time.Now()

	if existing != nil {
		rs := existing.DeepCopy()
		// A ReplicaSet that becomes current again (a rollback) takes the
		// next revision; every one carries the Deployment's annotations.
		if setNewReplicaSetAnnotations(d, rs, newRevision, true) || rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			return c.updateRS(ctx, s, rs)
		}
		revChanged := setDeploymentRevision(d, rs.Annotations[RevisionAnnotation])
		statusChanged := false
		if hasProgressDeadline(d) && getCondition(d.Status, appsv1.DeploymentProgressing) == nil {
			msg := fmt.Sprintf("Found new replica set %q", rs.Name)
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonFoundNewRS, msg, now))
			statusChanged = true
		}
		if err := c.writeDeployment(ctx, d, revChanged, statusChanged); err != nil {
			return nil, err
		}
		return rs, nil
	}
	if !create {
		return nil, nil
	}

	template := d.Spec.Template.DeepCopy()
	hash := ComputeHash(template, d.Status.CollisionCount)
	template.Labels = withLabel(d.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	selector := d.Spec.Selector.DeepCopy()
	selector.MatchLabels = withLabel(selector.MatchLabels, appsv1.DefaultDeploymentUniqueLabelKey, hash)
	zero := int32(0)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            replicaSetName(d.Name, hash),
			Namespace:       d.Namespace,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, controllerKind)},
			Labels:          template.Labels,
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        &zero,
			MinReadySeconds: d.Spec.MinReadySeconds,
			Selector:        selector,
			Template:        *template,
		},
	}
	n, err := newRSNewReplicas(s, append(oldRSs, rs), rs)
	if err != nil {
		return nil, err
	}
	rs.Spec.Replicas = &n
	setNewReplicaSetAnnotations(d, rs, newRevision, false)

	alreadyExists := false
	created, err := c.createRS(ctx, s, rs)
	switch {
	case apierrors.IsAlreadyExists(err):
		// A slow cache, or a hash collision with a ReplicaSet that is not
		// this template's.
		found, gerr := c.rsLister.ReplicaSets(rs.Namespace).Get(rs.Name)
		if gerr != nil {
			found, gerr = c.client.AppsV1().ReplicaSets(rs.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
		}
		if gerr != nil {
			return nil, fmt.Errorf("get existing replicaset %s: %w", rs.Name, gerr)
		}
		if ref := metav1.GetControllerOf(found); ref != nil && ref.UID == d.UID && EqualIgnoreHash(&d.Spec.Template, &found.Spec.Template) {
			created, alreadyExists = found, true
			break
		}
		if d.Status.CollisionCount == nil {
			d.Status.CollisionCount = new(int32)
		}
		*d.Status.CollisionCount++
		c.logger.Info("pod-template-hash collision, bumping collisionCount", "deployment", s.key, "collisionCount", *d.Status.CollisionCount)
		return nil, errors.Join(fmt.Errorf("replicaset %s exists with another template", rs.Name), c.updateStatus(ctx, d))
	case apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause):
		return nil, fmt.Errorf("create replicaset for %s: %w", s.key, err)
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		if hasProgressDeadline(d) {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionFalse, reasonFailedRSCreate, msg, now))
			// The creation error is the one worth returning.
			_ = c.updateStatus(ctx, d)
		}
		c.recorder.Event(d, v1.EventTypeWarning, reasonFailedRSCreate, msg)
		return nil, fmt.Errorf("create replicaset for %s: %w", s.key, err)
	}
	if !alreadyExists && n > 0 {
		c.recorder.Eventf(d, v1.EventTypeNormal, reasonScalingReplicaSet, "Scaled up replica set %s from 0 to %d", created.Name, n)
	}
	revChanged := setDeploymentRevision(d, newRevision)
	statusChanged := false
	if !alreadyExists && hasProgressDeadline(d) {
		msg := fmt.Sprintf("Created new replica set %q", created.Name)
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, reasonNewReplicaSet, msg, now))
		statusChanged = true
	}
	if err := c.writeDeployment(ctx, d, revChanged, statusChanged); err != nil {
		return nil, err
	}
	return created, nil
}

// writeDeployment writes d's annotations and/or status.
func (c *Controller) writeDeployment(ctx context.Context, d *appsv1.Deployment, annotations, status bool) error {
	if annotations {
		if err := c.updateAnnotations(ctx, d); err != nil {
			return err
		}
	}
	if status {
		return c.updateStatus(ctx, d)
	}
	return nil
}

// replicaSetName is <deployment>-<hash>, the deployment part shortened if
// the name would not be a valid object name.
func replicaSetName(deployment, hash string) string {
	if room := validation.DNS1123SubdomainMaxLength - len(hash) - 1; len(deployment) > room {
		deployment = deployment[:room]
	}
	return deployment + "-" + hash
}

func withLabel(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

// newRSNewReplicas is the size the new ReplicaSet may have now. For a
// rolling update that is as many as the surge allows, counting for every
// ReplicaSet the larger of its spec and its pods still present.
func newRSNewReplicas(s *state, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (int32, error) {
	d := s.d
	switch d.Spec.Strategy.Type {
	case appsv1.RollingUpdateDeploymentStrategyType:
		surge := maxSurge(d)
		current := s.sumPodCount(allRSs)
		maxTotal := *d.Spec.Replicas + surge
		if current >= maxTotal {
			return replicas(newRS), nil
		}
		up := min(maxTotal-current, *d.Spec.Replicas-replicas(newRS))
		return replicas(newRS) + max(up, 0), nil
	case appsv1.RecreateDeploymentStrategyType:
		return *d.Spec.Replicas, nil
	}
	return 0, fmt.Errorf("deployment %s: unexpected strategy type %q", s.key, d.Spec.Strategy.Type)
}

// scale resizes the ReplicaSets after a change of spec.replicas. A single
// active ReplicaSet takes the whole count; during a rollout the change is
// spread over the active ReplicaSets in proportion to their sizes, so
// scaling neither hastens nor reverses the rollout.
func (c *Controller) scale(ctx context.Context, s *state, newRS *appsv1.ReplicaSet, oldRSs []*appsv1.ReplicaSet) error {
	d := s.d
	if only := findActiveOrLatest(newRS, oldRSs); only != nil {
		if replicas(only) == *d.Spec.Replicas {
			return nil
		}
		_, _, err := c.scaleReplicaSetAndRecordEvent(ctx, s, only, *d.Spec.Replicas)
		return err
	}
	// A saturated new ReplicaSet (adopted while full, say) leaves nothing
	// for the old ones.
	if isSaturated(d, newRS) {
		for _, old := range filterActive(oldRSs) {
			if _, _, err := c.scaleReplicaSetAndRecordEvent(ctx, s, old, 0); err != nil {
				return err
			}
		}
		return nil
	}
	if !isRollingUpdate(d) {
		return nil
	}
	all := filterActive(append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS))
	allowed := int32(0)
	if *d.Spec.Replicas > 0 {
		allowed = *d.Spec.Replicas + maxSurge(d)
	}
	toAdd := allowed - sumReplicas(all)
	op := ""
	switch {
	case toAdd > 0:
		sort.Sort(bySizeNewer(all))
		op = "up"
	case toAdd < 0:
		sort.Sort(bySizeOlder(all))
		op = "down"
	}
	sizes := make(map[string]int32, len(all))
	var added int32
	for _, rs := range all {
		p := int32(0)
		if toAdd != 0 {
			p = proportion(rs, d, toAdd, added)
			added += p
		}
		sizes[rs.Name] = replicas(rs) + p
	}
	for i, rs := range all {
		if i == 0 && toAdd != 0 {
			// Rounding leftovers go to the largest ReplicaSet.
			sizes[rs.Name] = max(sizes[rs.Name]+toAdd-added, 0)
		}
		if _, _, err := c.scaleReplicaSet(ctx, s, rs, sizes[rs.Name], op); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) scaleReplicaSetAndRecordEvent(ctx context.Context, s *state, rs *appsv1.ReplicaSet, size int32) (bool, *appsv1.ReplicaSet, error) {
	if replicas(rs) == size {
		return false, rs, nil
	}
	op := "down"
	if replicas(rs) < size {
		op = "up"
	}
	return c.scaleReplicaSet(ctx, s, rs, size, op)
}

// scaleReplicaSet sets rs's size and replica annotations and records a
// ScalingReplicaSet event with Kubernetes' wording.
func (c *Controller) scaleReplicaSet(ctx context.Context, s *state, rs *appsv1.ReplicaSet, size int32, op string) (bool, *appsv1.ReplicaSet, error) {
	d := s.d
	resize := replicas(rs) != size
	desired, maxReplicas := *d.Spec.Replicas, *d.Spec.Replicas+maxSurge(d)
	if !resize && !replicasAnnotationsNeedUpdate(rs, desired, maxReplicas) {
		return false, rs, nil
	}
	from := replicas(rs)
	cp := rs.DeepCopy()
	cp.Spec.Replicas = &size
	setReplicasAnnotations(cp, desired, maxReplicas)
	out, err := c.updateRS(ctx, s, cp)
	if err != nil {
		return false, rs, err
	}
	if resize {
		c.recorder.Eventf(d, v1.EventTypeNormal, reasonScalingReplicaSet, "Scaled %s replica set %s from %d to %d", op, out.Name, from, size)
	}
	return resize, out, nil
}

// cleanupDeployment deletes the oldest empty old ReplicaSets beyond
// revisionHistoryLimit.
func (c *Controller) cleanupDeployment(ctx context.Context, s *state, oldRSs []*appsv1.ReplicaSet) error {
	d := s.d
	if !hasRevisionHistoryLimit(d) {
		return nil
	}
	var cleanable []*appsv1.ReplicaSet
	for _, rs := range oldRSs {
		if rs != nil && rs.DeletionTimestamp == nil {
			cleanable = append(cleanable, rs)
		}
	}
	diff := int32(len(cleanable)) - *d.Spec.RevisionHistoryLimit
	if diff <= 0 {
		return nil
	}
	sort.Sort(byRevision(cleanable))
	for _, rs := range cleanable[:diff] {
		// Only ReplicaSets that are empty and whose controller has seen
		// that they should be.
		if rs.Status.Replicas != 0 || replicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		c.logger.Debug("deleting old replicaset", "deployment", s.key, "replicaset", rs.Name)
		err := c.client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old replicaset %s: %w", controller.Key(rs), err)
		}
	}
	return nil
}

// syncDeploymentStatus writes the status computed from the ReplicaSets if
// it differs.
func (c *Controller) syncDeploymentStatus(ctx context.Context, s *state, allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	status := calculateStatus(allRSs, newRS, s.d)
	if reflect.DeepEqual(s.d.Status, status) {
		return nil
	}
	s.d.Status = status
	return c.updateStatus(ctx, s.d)
}

// calculateStatus sums the ReplicaSets' status (as reported by the
// replicaset controller, which kubectl rollout status relies on) and sets
// the Available condition.
func calculateStatus(allRSs []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) appsv1.DeploymentStatus {
	var total, specTotal, ready, available int32
	for _, rs := range allRSs {
		if rs == nil {
			continue
		}
		total += rs.Status.Replicas
		specTotal += replicas(rs)
		ready += rs.Status.ReadyReplicas
		available += rs.Status.AvailableReplicas
	}
	var updated int32
	if newRS != nil {
		updated = newRS.Status.Replicas
	}
	status := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            total,
		UpdatedReplicas:     updated,
		ReadyReplicas:       ready,
		AvailableReplicas:   available,
		UnavailableReplicas: max(specTotal-available, 0),
		CollisionCount:      d.Status.CollisionCount,
	}
	status.Conditions = append(status.Conditions, d.Status.Conditions...)
	now := time.Now()
	if available >= *d.Spec.Replicas-maxUnavailable(d) {
		setCondition(&status, newCondition(appsv1.DeploymentAvailable, v1.ConditionTrue, reasonMinimumAvailable, "Deployment has minimum availability.", now))
	} else {
		setCondition(&status, newCondition(appsv1.DeploymentAvailable, v1.ConditionFalse, reasonMinimumUnavailable, "Deployment does not have minimum availability.", now))
	}
	return status
}
