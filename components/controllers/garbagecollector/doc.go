// Package garbagecollector is the controller-manager's garbage collector,
// after Kubernetes' pkg/controller/garbagecollector.
//
// It watches the metadata of every resource that can be listed, watched
// and deleted (found through discovery, again every 30 s) and keeps a
// graph of objects keyed by UID with their ownerReferences. One goroutine
// applies informer events to the graph; workers act on it through the API:
//
//   - an object whose owners are all gone (404, or another object with the
//     same name and a different UID) is deleted, in the background;
//   - an owner deleted with propagationPolicy Foreground carries the
//     foregroundDeletion finalizer: its blocking dependents
//     (blockOwnerDeletion) are deleted first, in foreground themselves if
//     they have dependents, and the finalizer is removed once none is left;
//   - an owner deleted with propagationPolicy Orphan carries the orphan
//     finalizer: its references are removed from the dependents, then the
//     finalizer.
//
// Owners only named by ownerReferences are "virtual" nodes until observed;
// a worker asks the API about them, and an absent one becomes a virtual
// delete event that lets its dependents be collected.
package garbagecollector
