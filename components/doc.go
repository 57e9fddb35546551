// Package components runs the control-plane components of a master — the
// scheduler and the controller-manager — each active only while it holds its
// lease (package leader), on every master.
//
// Components reach the cluster only through the Kubernetes API with
// client-go; they never import the store. A term of leadership gets fresh
// informers, a fresh event broadcaster and a client whose writes are fenced
// by the lease, and everything of that term has stopped before the master
// campaigns again or releases the lease.
package components
