// Package leader elects one active instance of a component among the
// masters, on a coordination.k8s.io/v1 Lease through the Kubernetes API, as
// kube-scheduler and kube-controller-manager do.
//
// It is client-go's leaderelection with three additions that make "never two
// active at once" hold rather than merely be likely:
//
//   - the work of a term runs under a context cancelled when renewal fails,
//     and Run waits for the work to return before it campaigns again or
//     releases the lease;
//   - a Fence wraps the component's HTTP transport and refuses every write
//     once the last successful renewal is older than the renew deadline, so a
//     process that was paused (SIGSTOP, a long GC) cannot act on a lease that
//     another master may already hold;
//   - the lease is released only after the work has stopped (client-go's
//     ReleaseOnCancel releases while the work may still be running).
package leader
