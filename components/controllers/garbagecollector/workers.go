package garbagecollector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// snapshot is what a worker reads of a node, under the graph lock.
type snapshot struct {
	identity           objectReference
	virtual            bool
	beingDeleted       bool
	deletingDependents bool
	dependents         []*node
	// depDeletingDependents: some dependent is itself in foreground
	// deletion (a possible cycle).
	depDeletingDependents bool
	blocking              []*node
}

func (gc *GarbageCollector) snapshot(n *node) snapshot {
	gc.mu.RLock()
	defer gc.mu.RUnlock()
	s := snapshot{identity: n.identity, virtual: n.virtual, beingDeleted: n.beingDeleted, deletingDependents: n.deletingDependents}
	for d := range n.dependents {
		s.dependents = append(s.dependents, d)
		if d.deletingDependents {
			s.depDeletingDependents = true
		}
	}
	s.blocking = n.blockingDependents()
	return s
}

func (gc *GarbageCollector) processAttemptToDelete(ctx context.Context) bool {
	n, quit := gc.attemptToDelete.Get()
	if quit {
		return false
	}
	defer gc.attemptToDelete.Done(n)
	requeue := gc.attemptToDeleteWorker(ctx, n)
	if requeue && ctx.Err() == nil {
		gc.attemptToDelete.AddRateLimited(n)
	} else {
		gc.attemptToDelete.Forget(n)
	}
	return true
}

// attemptToDeleteWorker reports whether n must be looked at again.
func (gc *GarbageCollector) attemptToDeleteWorker(ctx context.Context, n *node) bool {
	s := gc.snapshot(n)
	if s.virtual {
		gc.mu.RLock()
		inGraph, ok := gc.uidToNode[s.identity.UID]
		observed := ok && !inGraph.virtual
		gc.mu.RUnlock()
		// Meanwhile deleted, or observed for real: the queued virtual
		// node is stale.
		if !ok || observed {
			return false
		}
	}
	err := gc.attemptToDeleteItem(ctx, n, s)
	switch {
	case errors.Is(err, errVirtualDelete), errors.Is(err, errNamespacedOwnerOfClusterScoped):
		return false
	case err != nil:
		var rme *restMappingError
		if !errors.As(err, &rme) && ctx.Err() == nil {
			gc.log.Debug("garbage collection of an item failed; retrying", "item", s.identity.String(), "err", err)
		}
		return true
	case s.virtual:
		// Not observed yet: an object created and removed while a
		// watch was re-established would stay in the graph forever
		// otherwise.
		return true
	}
	return false
}

// attemptToDeleteItem is Kubernetes' attemptToDeleteItem: it deletes the
// item if none of its owners remains, removes references to owners that
// are gone, and deletes dependents blocking a foreground deletion.
func (gc *GarbageCollector) attemptToDeleteItem(ctx context.Context, item *node, s snapshot) error {
	// Already on its way out; its dependents are handled once it is gone.
	if s.beingDeleted && !s.deletingDependents {
		return nil
	}
	latest, err := gc.getObject(ctx, s.identity)
	switch {
	case apierrors.IsNotFound(err):
		gc.enqueueVirtualDeleteEvent(s.identity)
		return errVirtualDelete
	case err != nil:
		return err
	}
	if latest.UID != s.identity.UID {
		gc.enqueueVirtualDeleteEvent(s.identity)
		return errVirtualDelete
	}
	if s.deletingDependents {
		return gc.processDeletingDependentsItem(ctx, s)
	}
	refs := latest.OwnerReferences
	if len(refs) == 0 {
		return nil
	}
	solid, dangling, waiting, err := gc.classifyReferences(ctx, s, refs)
	if err != nil {
		return err
	}
	switch {
	case len(solid) != 0:
		if len(dangling) == 0 && len(waiting) == 0 {
			return nil
		}
		// Still owned: only drop the references to absent owners and to
		// owners waiting for their dependents.
		var uids []types.UID
		for _, r := range append(dangling, waiting...) {
			uids = append(uids, r.UID)
		}
		err := gc.patchObject(ctx, s.identity, types.StrategicMergePatchType, deleteOwnerRefsPatch(s.identity.UID, uids...))
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	case len(waiting) != 0 && len(s.dependents) != 0:
		if s.depDeletingDependents {
			// A dependent waits for this item while this item's owner
			// waits for it: unblock this item's references so the
			// cycle cannot deadlock, then go on in foreground.
			if err := gc.unblockOwnerReferences(ctx, s.identity, latest.OwnerReferences); err != nil {
				return err
			}
		}
		// Its owner waits for it, and it has dependents of its own: delete
		// it in foreground too, so the whole chain goes bottom-up.
		return gc.deleteObject(ctx, s.identity, metav1.DeletePropagationForeground)
	default:
		// No solid owner left (all gone, or all waiting for it): collect
		// it, keeping the policy it already asked for.
		policy := metav1.DeletePropagationBackground
		switch {
		case hasFinalizer(latest, metav1.FinalizerOrphanDependents):
			policy = metav1.DeletePropagationOrphan
		case hasFinalizer(latest, metav1.FinalizerDeleteDependents):
			policy = metav1.DeletePropagationForeground
		}
		gc.log.Debug("deleting object without a solid owner", "item", s.identity.String(), "dangling", len(dangling), "waiting", len(waiting), "policy", policy)
		err := gc.deleteObject(ctx, s.identity, policy)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
}

// processDeletingDependentsItem: an item in foreground deletion loses its
// finalizer once no dependent blocks it; until then those dependents are
// queued for deletion.
func (gc *GarbageCollector) processDeletingDependentsItem(ctx context.Context, s snapshot) error {
	if len(s.blocking) == 0 {
		return gc.removeFinalizer(ctx, s.identity, metav1.FinalizerDeleteDependents)
	}
	gc.mu.RLock()
	defer gc.mu.RUnlock()
	for _, dep := range s.blocking {
		if !dep.deletingDependents {
			gc.attemptToDelete.Add(dep)
		}
	}
	return nil
}

// classifyReferences sorts an item's owner references into solid (the
// owner exists and is not waiting for it), dangling (the owner is gone)
// and waiting (the owner is in foreground deletion and this reference
// blocks it).
func (gc *GarbageCollector) classifyReferences(ctx context.Context, s snapshot, refs []metav1.OwnerReference) (solid, dangling, waiting []metav1.OwnerReference, err error) {
	for _, ref := range refs {
		isDangling, owner, err := gc.isDangling(ctx, ref, s)
		if err != nil {
			return nil, nil, nil, err
		}
		if isDangling {
			dangling = append(dangling, ref)
			continue
		}
		if beingDeleted(owner) && hasFinalizer(owner, metav1.FinalizerDeleteDependents) && boolValue(ref.BlockOwnerDeletion) {
			waiting = append(waiting, ref)
		} else {
			solid = append(solid, ref)
		}
	}
	return solid, dangling, waiting, nil
}

// isDangling asks the API whether the referenced owner exists with that
// UID (remembering absent owners).
func (gc *GarbageCollector) isDangling(ctx context.Context, ref metav1.OwnerReference, s snapshot) (bool, *metav1.PartialObjectMetadata, error) {
	key := objectReference{OwnerReference: coordinates(ref)}
	if gc.absent.has(key) {
		return true, nil, nil // a cluster-scoped owner known absent
	}
	key.Namespace = s.identity.Namespace
	if gc.absent.has(key) {
		return true, nil, nil
	}
	_, namespaced, err := gc.apiResource(ref.APIVersion, ref.Kind)
	if err != nil {
		return false, nil, err
	}
	if !namespaced {
		key.Namespace = ""
	}
	if s.identity.Namespace == "" && namespaced {
		return false, nil, errNamespacedOwnerOfClusterScoped
	}
	owner, err := gc.getObject(ctx, key)
	switch {
	case apierrors.IsNotFound(err):
		gc.absent.add(key)
		return true, nil, nil
	case err != nil:
		return false, nil, err
	}
	if owner.UID != ref.UID {
		gc.absent.add(key)
		return true, nil, nil
	}
	return false, owner, nil
}

// unblockOwnerReferences sets blockOwnerDeletion=false on the item's
// references to owners in foreground deletion.
func (gc *GarbageCollector) unblockOwnerReferences(ctx context.Context, id objectReference, refs []metav1.OwnerReference) error {
	var patchRefs []map[string]any
	for _, r := range refs {
		if !boolValue(r.BlockOwnerDeletion) {
			continue
		}
		gc.mu.RLock()
		owner, ok := gc.uidToNode[r.UID]
		waiting := ok && owner.deletingDependents
		gc.mu.RUnlock()
		if waiting {
			patchRefs = append(patchRefs, map[string]any{"uid": r.UID, "apiVersion": r.APIVersion, "kind": r.Kind, "name": r.Name, "blockOwnerDeletion": false})
		}
	}
	if len(patchRefs) == 0 {
		return nil
	}
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": patchRefs, "uid": id.UID}})
	if err != nil {
		return fmt.Errorf("unblock patch: %w", err)
	}
	err = gc.patchObject(ctx, id, types.StrategicMergePatchType, b)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (gc *GarbageCollector) processAttemptToOrphan(ctx context.Context) bool {
	n, quit := gc.attemptToOrphan.Get()
	if quit {
		return false
	}
	defer gc.attemptToOrphan.Done(n)
	s := gc.snapshot(n)
	if err := gc.orphanDependents(ctx, s); err != nil {
		if ctx.Err() == nil {
			gc.log.Debug("orphaning dependents failed; retrying", "owner", s.identity.String(), "err", err)
			gc.attemptToOrphan.AddRateLimited(n)
		}
		return true
	}
	if err := gc.removeFinalizer(ctx, s.identity, metav1.FinalizerOrphanDependents); err != nil {
		if ctx.Err() == nil {
			gc.log.Debug("removing the orphan finalizer failed; retrying", "owner", s.identity.String(), "err", err)
			gc.attemptToOrphan.AddRateLimited(n)
		}
		return true
	}
	gc.attemptToOrphan.Forget(n)
	return true
}

// orphanDependents removes the owner's references from its dependents.
func (gc *GarbageCollector) orphanDependents(ctx context.Context, owner snapshot) error {
	var errs []error
	for _, dep := range owner.dependents {
		gc.mu.RLock()
		id := dep.identity
		gc.mu.RUnlock()
		err := gc.patchObject(ctx, id, types.StrategicMergePatchType, deleteOwnerRefsPatch(id.UID, owner.identity.UID))
		// A reference already gone is no error for a strategic merge patch.
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("orphan %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
