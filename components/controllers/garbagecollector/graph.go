package garbagecollector

import (
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// objectReference is an object's identity: its owner-reference
// coordinates (apiVersion, kind, name, uid) plus its namespace.
type objectReference struct {
	metav1.OwnerReference
	Namespace string
}

func (r objectReference) String() string {
	return fmt.Sprintf("[%s/%s, namespace: %s, name: %s, uid: %s]", r.APIVersion, r.Kind, r.Namespace, r.Name, r.UID)
}

// coordinates strips an owner reference down to what identifies the owner.
func coordinates(ref metav1.OwnerReference) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID}
}

// node is an object in the dependency graph. Every field is guarded by the
// graph's lock; a node whose identity changes is replaced by a copy (the
// work queues dedupe by pointer).
type node struct {
	identity objectReference
	// dependents are the nodes whose ownerReferences name this node.
	dependents map[*node]struct{}
	// owners are the object's ownerReferences as last observed.
	owners []metav1.OwnerReference
	// deletingDependents: deletionTimestamp and the foregroundDeletion
	// finalizer are set; dependents are deleted first.
	deletingDependents bool
	// beingDeleted: deletionTimestamp is set.
	beingDeleted bool
	// virtual: only known as someone's owner, not (yet) observed through
	// an informer.
	virtual bool
}

func (n *node) clone() *node {
	c := &node{identity: n.identity, dependents: make(map[*node]struct{}, len(n.dependents)),
		owners: n.owners, deletingDependents: n.deletingDependents, beingDeleted: n.beingDeleted, virtual: n.virtual}
	for d := range n.dependents {
		c.dependents[d] = struct{}{}
	}
	return c
}

// blockingDependents are the dependents whose reference to n has
// blockOwnerDeletion: a foreground deletion of n waits for them.
func (n *node) blockingDependents() []*node {
	var out []*node
	for dep := range n.dependents {
		for _, o := range dep.owners {
			if o.UID == n.identity.UID && o.BlockOwnerDeletion != nil && *o.BlockOwnerDeletion {
				out = append(out, dep)
			}
		}
	}
	return out
}

// partitionDependents splits dependents into those whose reference to the
// owner matches identity and those that name it differently.
func partitionDependents(dependents map[*node]struct{}, identity objectReference) (matching, nonmatching []*node) {
	ownerNamespaced := identity.Namespace != ""
	for dep := range dependents {
		found := false
		for _, o := range dep.owners {
			if o.UID != identity.UID {
				continue
			}
			found = true
			if coordinates(o) == identity.OwnerReference && (!ownerNamespaced || dep.identity.Namespace == identity.Namespace) {
				matching = append(matching, dep)
			} else {
				nonmatching = append(nonmatching, dep)
			}
			break
		}
		if !found {
			nonmatching = append(nonmatching, dep)
		}
	}
	return matching, nonmatching
}

// referencesDiffs compares two ownerReference lists by UID.
func referencesDiffs(old, cur []metav1.OwnerReference) (added, removed []metav1.OwnerReference, changed []ownerRefPair) {
	oldByUID := map[types.UID]metav1.OwnerReference{}
	for _, o := range old {
		oldByUID[o.UID] = o
	}
	for _, c := range cur {
		o, ok := oldByUID[c.UID]
		if !ok {
			added = append(added, c)
			continue
		}
		if !ownerRefEqual(o, c) {
			changed = append(changed, ownerRefPair{oldRef: o, newRef: c})
		}
		delete(oldByUID, c.UID)
	}
	for _, o := range oldByUID {
		removed = append(removed, o)
	}
	return added, removed, changed
}

type ownerRefPair struct{ oldRef, newRef metav1.OwnerReference }

func ownerRefEqual(a, b metav1.OwnerReference) bool {
	return coordinates(a) == coordinates(b) && boolValue(a.Controller) == boolValue(b.Controller) &&
		boolValue(a.BlockOwnerDeletion) == boolValue(b.BlockOwnerDeletion)
}

func boolValue(b *bool) bool { return b != nil && *b }

// absentOwners remembers owners confirmed absent (deleted, or never there
// with that UID), so dependents need not ask the API again. Bounded: the
// oldest entries are forgotten first.
type absentOwners struct {
	mu    sync.Mutex
	max   int
	set   map[objectReference]struct{}
	order []objectReference
}

func newAbsentOwners(max int) *absentOwners {
	return &absentOwners{max: max, set: map[objectReference]struct{}{}}
}

func (a *absentOwners) add(r objectReference) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.set[r]; ok {
		return
	}
	a.set[r] = struct{}{}
	a.order = append(a.order, r)
	if len(a.order) > a.max {
		delete(a.set, a.order[0])
		a.order = a.order[1:]
	}
}

func (a *absentOwners) has(r objectReference) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.set[r]
	return ok
}
