// Package e2e tests the API load balancer (node/apilb) against a real
// synod cluster: processes on loopback, masters killed with SIGKILL and
// started again. It is a package of its own so that the balancer's unit
// tests do not wait for the synod binary to build.
package e2e
