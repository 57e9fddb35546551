// Package controllers is the controller-manager: it builds the enabled
// controllers (kube-controller-manager's names, selected with its
// --controllers syntax), starts the shared informers, waits for their caches
// and runs every controller until the term of leadership ends.
package controllers
