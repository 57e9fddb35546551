// Package apilb is the worker's client-side load balancer for the Kubernetes
// API, in the spirit of k3s's agent load balancer: a TCP proxy on
// 127.0.0.1:6444 that the kubelet's and proxy's kubeconfigs point at
// (https://127.0.0.1:6444 with the cluster CA; TLS passes through untouched,
// so the masters' serving certificates must include 127.0.0.1, which
// synod's do), forwarding each new connection to a healthy apiserver.
//
// The servers are a static list (the --server flags, so a worker started
// with one master address works before gossip has news) plus the masters
// gossip announces (a Source, such as *gossip.Pool). Every server is
// health-checked about once a second (TCP connect, TLS, GET /readyz with a
// short timeout). New connections go round-robin over the healthy servers;
// a dial that fails marks its server unhealthy at once and the connection
// tries the next one, so a master that dies is skipped by the very next
// connection. Connections to a server that turned unhealthy are closed
// while a healthy one exists, so clients (client-go reconnects its
// watches) move; when nothing is healthy every server is tried, and a
// master that comes back is used again by new connections as soon as one
// check passes.
//
// A gossip update that lists no master at all is ignored (the worker is
// more likely cut off than every master gone); a master that gossip drops
// is removed and its connections closed, unless it is in the static list.
package apilb
