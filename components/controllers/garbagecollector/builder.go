package garbagecollector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/cache"
)

type eventType int

const (
	addEvent eventType = iota
	updateEvent
	deleteEvent
)

// event is one informer event (or a virtual delete: an object the
// collector found absent by asking the API) for the graph builder.
type event struct {
	virtual   bool
	eventType eventType
	obj       metav1.Object
	oldObj    metav1.Object
	gvk       schema.GroupVersionKind
}

// ignoredResources are not watched: nothing owns events, and there are many.
var ignoredResources = map[schema.GroupResource]bool{
	{Group: "", Resource: "events"}:              true,
	{Group: "events.k8s.io", Resource: "events"}: true,
}

// deletableResources lists the resources the collector watches: the
// preferred version of everything that can be listed, watched and deleted.
// A partial discovery failure still returns what was found, with the error.
func deletableResources(disc discovery.DiscoveryInterface) (map[schema.GroupVersionResource]schema.GroupVersionKind, error) {
	lists, err := disc.ServerPreferredResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return nil, fmt.Errorf("discover resources: %w", err)
	}
	out := map[schema.GroupVersionResource]schema.GroupVersionKind{}
	for _, list := range lists {
		gv, perr := schema.ParseGroupVersion(list.GroupVersion)
		if perr != nil {
			continue
		}
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") {
				continue // a subresource
			}
			if !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") || !slices.Contains(r.Verbs, "delete") {
				continue
			}
			group, version := gv.Group, gv.Version
			if r.Group != "" {
				group = r.Group
			}
			if r.Version != "" {
				version = r.Version
			}
			if ignoredResources[schema.GroupResource{Group: group, Resource: r.Name}] {
				continue
			}
			out[schema.GroupVersionResource{Group: group, Version: version, Resource: r.Name}] = schema.GroupVersionKind{Group: group, Version: version, Kind: r.Kind}
		}
	}
	return out, err
}

// syncMonitors starts a metadata informer for every resource not watched
// yet. It returns the new informers' HasSynced.
func (gc *GarbageCollector) syncMonitors(ctx context.Context, resources map[schema.GroupVersionResource]schema.GroupVersionKind) ([]cache.InformerSynced, error) {
	var synced []cache.InformerSynced
	var errs []error
	for gvr, gvk := range resources {
		if gc.monitors[gvr] {
			continue
		}
		inf := gc.factory.ForResource(gvr).Informer()
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if m, ok := obj.(metav1.Object); ok {
					gc.graphChanges.Add(&event{eventType: addEvent, obj: m, gvk: gvk})
				}
			},
			UpdateFunc: func(oldObj, obj any) {
				m, ok1 := obj.(metav1.Object)
				old, ok2 := oldObj.(metav1.Object)
				if ok1 && ok2 {
					gc.graphChanges.Add(&event{eventType: updateEvent, obj: m, oldObj: old, gvk: gvk})
				}
			},
			DeleteFunc: func(obj any) {
				if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = t.Obj
				}
				if m, ok := obj.(metav1.Object); ok {
					gc.graphChanges.Add(&event{eventType: deleteEvent, obj: m, gvk: gvk})
				}
			},
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("watch %s: %w", gvr, err))
			continue
		}
		gc.monitors[gvr] = true
		synced = append(synced, reg.HasSynced)
	}
	gc.factory.Start(ctx.Done())
	return synced, errors.Join(errs...)
}

// runGraphBuilder applies graph changes, one at a time, until the queue
// shuts down.
func (gc *GarbageCollector) runGraphBuilder() {
	for {
		ev, quit := gc.graphChanges.Get()
		if quit {
			return
		}
		gc.processGraphChange(ev)
		gc.graphChanges.Done(ev)
	}
}

func identityFromEvent(ev *event) objectReference {
	return objectReference{
		OwnerReference: metav1.OwnerReference{APIVersion: ev.gvk.GroupVersion().String(), Kind: ev.gvk.Kind, UID: ev.obj.GetUID(), Name: ev.obj.GetName()},
		Namespace:      ev.obj.GetNamespace(),
	}
}

func beingDeleted(m metav1.Object) bool { return m.GetDeletionTimestamp() != nil }

func hasFinalizer(m metav1.Object, f string) bool { return slices.Contains(m.GetFinalizers(), f) }

// deletionStartsWithFinalizer: obj is now being deleted with finalizer f,
// and was not before.
func deletionStartsWithFinalizer(oldObj, obj metav1.Object, f string) bool {
	if !beingDeleted(obj) || !hasFinalizer(obj, f) {
		return false
	}
	return oldObj == nil || !beingDeleted(oldObj) || !hasFinalizer(oldObj, f)
}

// processGraphChange is Kubernetes' GraphBuilder.processGraphChanges for
// one event. It holds the graph lock throughout.
func (gc *GarbageCollector) processGraphChange(ev *event) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	uid := ev.obj.GetUID()
	existing, found := gc.uidToNode[uid]
	if found && !ev.virtual && existing.virtual {
		// First sight of an object known so far only as an owner: its
		// observed coordinates win; dependents that named it otherwise
		// get checked.
		observed := identityFromEvent(ev)
		if observed != existing.identity {
			_, invalid := partitionDependents(existing.dependents, observed)
			for _, dep := range invalid {
				gc.attemptToDelete.Add(dep)
			}
			c := existing.clone()
			c.identity = observed
			gc.replaceNode(existing, c)
			existing = c
		}
		existing.virtual = false
	}
	switch {
	case (ev.eventType == addEvent || ev.eventType == updateEvent) && !found:
		n := &node{
			identity:           identityFromEvent(ev),
			dependents:         map[*node]struct{}{},
			owners:             ev.obj.GetOwnerReferences(),
			beingDeleted:       beingDeleted(ev.obj),
			deletingDependents: beingDeleted(ev.obj) && hasFinalizer(ev.obj, metav1.FinalizerDeleteDependents),
		}
		gc.uidToNode[uid] = n
		gc.addDependentToOwners(n, n.owners)
		gc.processTransitions(ev.oldObj, ev.obj, n)
	case ev.eventType == addEvent || ev.eventType == updateEvent:
		added, removed, changed := referencesDiffs(existing.owners, ev.obj.GetOwnerReferences())
		if len(added) > 0 || len(removed) > 0 || len(changed) > 0 {
			// Owners waiting for this dependent may be unblocked now.
			gc.addUnblockedOwnersToDeleteQueue(removed, changed)
			existing.owners = ev.obj.GetOwnerReferences()
			gc.addDependentToOwners(existing, added)
			gc.removeDependentFromOwners(existing, removed)
		}
		if beingDeleted(ev.obj) {
			existing.beingDeleted = true
		}
		gc.processTransitions(ev.oldObj, ev.obj, existing)
	case ev.eventType == deleteEvent:
		if !found {
			return
		}
		remove := true
		if ev.virtual {
			remove = gc.processVirtualDelete(ev, existing)
		}
		if !remove {
			return
		}
		gc.removeNode(existing)
		if len(existing.dependents) > 0 {
			gc.absent.add(identityFromEvent(ev))
		}
		for dep := range existing.dependents {
			gc.attemptToDelete.Add(dep)
		}
		for _, o := range existing.owners {
			if owner, ok := gc.uidToNode[o.UID]; ok && owner.deletingDependents {
				// Its foreground deletion may be able to finish now.
				gc.attemptToDelete.Add(owner)
			}
		}
	}
}

// processVirtualDelete handles "the API says this identity is absent"; it
// returns whether the node should go from the graph.
func (gc *GarbageCollector) processVirtualDelete(ev *event, existing *node) bool {
	deleted := identityFromEvent(ev)
	if existing.virtual {
		matching, nonmatching := partitionDependents(existing.dependents, deleted)
		if len(nonmatching) == 0 {
			return true
		}
		// Dependents disagree on who this owner is: only those naming
		// the absent identity are checked now.
		if len(matching) > 0 {
			gc.absent.add(deleted)
			for _, dep := range matching {
				gc.attemptToDelete.Add(dep)
			}
		}
		if existing.identity == deleted {
			if alt := alternateOwnerIdentity(nonmatching, deleted); alt != nil {
				c := existing.clone()
				c.identity = *alt
				gc.replaceNode(existing, c)
				gc.attemptToDelete.AddRateLimited(c)
			}
		}
		return false
	}
	if existing.identity != deleted {
		// A real object observed under other coordinates: keep it, but
		// dependents naming the absent coordinates are dangling.
		matching, _ := partitionDependents(existing.dependents, deleted)
		if len(matching) > 0 {
			gc.absent.add(deleted)
			for _, dep := range matching {
				gc.attemptToDelete.Add(dep)
			}
		}
		return false
	}
	return true
}

// alternateOwnerIdentity finds another identity dependents give an owner
// UID whose identity was found absent.
func alternateOwnerIdentity(deps []*node, absent objectReference) *objectReference {
	sort.Slice(deps, func(i, j int) bool { return deps[i].identity.String() < deps[j].identity.String() })
	for _, dep := range deps {
		for _, o := range dep.owners {
			if o.UID != absent.UID {
				continue
			}
			alt := objectReference{OwnerReference: coordinates(o), Namespace: dep.identity.Namespace}
			if alt != absent {
				return &alt
			}
		}
	}
	return nil
}

// replaceNode puts c in old's place: in the UID map and in the dependents
// of old's owners; old's dependents stay dependents of c.
func (gc *GarbageCollector) replaceNode(old, c *node) {
	gc.uidToNode[c.identity.UID] = c
	for _, o := range old.owners {
		if owner, ok := gc.uidToNode[o.UID]; ok {
			if _, ok := owner.dependents[old]; ok {
				delete(owner.dependents, old)
				owner.dependents[c] = struct{}{}
			}
		}
	}
}

// addDependentToOwners links n under each owner, creating virtual nodes
// for owners not seen yet (and asking the API about them).
func (gc *GarbageCollector) addDependentToOwners(n *node, owners []metav1.OwnerReference) {
	suspicious := false
	for _, o := range owners {
		owner, ok := gc.uidToNode[o.UID]
		if !ok {
			owner = &node{
				identity:   objectReference{OwnerReference: coordinates(o), Namespace: n.identity.Namespace},
				dependents: map[*node]struct{}{},
				virtual:    true,
			}
			gc.uidToNode[o.UID] = owner
		}
		owner.dependents[n] = struct{}{}
		if !ok {
			// The workers confirm or refute the owner's existence.
			gc.attemptToDelete.Add(owner)
			continue
		}
		if suspicious {
			continue
		}
		ownerNamespaced := owner.identity.Namespace != ""
		switch {
		case ownerNamespaced && owner.identity.Namespace != n.identity.Namespace:
			if !owner.virtual {
				gc.reportInvalidNamespaceOwnerRef(n, o)
			}
			suspicious = true
		case coordinates(o) != owner.identity.OwnerReference:
			suspicious = true
		case !ownerNamespaced && owner.identity.Namespace != n.identity.Namespace && owner.virtual:
			suspicious = true
		}
	}
	if suspicious {
		// Maybe all its owners are dangling: let the workers check.
		gc.attemptToDelete.Add(n)
	}
}

func (gc *GarbageCollector) removeDependentFromOwners(n *node, owners []metav1.OwnerReference) {
	for _, o := range owners {
		if owner, ok := gc.uidToNode[o.UID]; ok {
			delete(owner.dependents, n)
		}
	}
}

func (gc *GarbageCollector) removeNode(n *node) {
	delete(gc.uidToNode, n.identity.UID)
	gc.removeDependentFromOwners(n, n.owners)
}

// addUnblockedOwnersToDeleteQueue requeues owners in foreground deletion
// that a dependent stopped blocking.
func (gc *GarbageCollector) addUnblockedOwnersToDeleteQueue(removed []metav1.OwnerReference, changed []ownerRefPair) {
	requeue := func(uid types.UID) {
		if owner, ok := gc.uidToNode[uid]; ok && owner.deletingDependents {
			gc.attemptToDelete.Add(owner)
		}
	}
	for _, r := range removed {
		if boolValue(r.BlockOwnerDeletion) {
			requeue(r.UID)
		}
	}
	for _, c := range changed {
		if boolValue(c.oldRef.BlockOwnerDeletion) && !boolValue(c.newRef.BlockOwnerDeletion) {
			requeue(c.newRef.UID)
		}
	}
}

// processTransitions starts the orphan or foreground work when an object
// starts being deleted with the matching finalizer.
func (gc *GarbageCollector) processTransitions(oldObj, obj metav1.Object, n *node) {
	if deletionStartsWithFinalizer(oldObj, obj, metav1.FinalizerOrphanDependents) {
		gc.attemptToOrphan.Add(n)
		return
	}
	if deletionStartsWithFinalizer(oldObj, obj, metav1.FinalizerDeleteDependents) {
		n.deletingDependents = true
		for dep := range n.dependents {
			gc.attemptToDelete.Add(dep)
		}
		gc.attemptToDelete.Add(n)
	}
}

// enqueueVirtualDeleteEvent tells the graph builder an identity is absent.
func (gc *GarbageCollector) enqueueVirtualDeleteEvent(ref objectReference) {
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	gc.graphChanges.Add(&event{
		virtual:   true,
		eventType: deleteEvent,
		gvk:       gv.WithKind(ref.Kind),
		obj:       &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID}},
	})
}
