// Package controller is what every controller of the controller-manager
// shares: the Context it is built from (client, shared informers, event
// recorders, options) and the Runner it returns.
//
// A controller is built by an InitFunc before the informers start (so it can
// register its event handlers and listers), then run with Run(ctx) after
// the caches have synced. Run blocks until ctx is cancelled and must return
// promptly then: the controller-manager waits for every Run to return before
// it gives up its lease.
package controller
