// Package node is the worker agent, the part of synod that runs on every
// machine that hosts pods. Its subpackages each do one job:
//
//   - gossip: membership of the gossip pool that masters and workers share
//     (github.com/hashicorp/memberlist): who is alive, which masters serve
//     the Kubernetes API, encrypted with a shared key.
//   - apilb: the worker's local TCP load balancer in front of the masters'
//     apiservers (127.0.0.1:6444), fed by gossip and health checks, so the
//     kubelet and proxy never pin one master.
//   - kubelet: registers the Node, renews its Lease and runs the pods bound
//     to it on containerd.
//   - proxy: programs Services into iptables, as kube-proxy does.
//   - network: pod network namespaces, the node bridge and routes to other
//     workers' pod CIDRs.
//
// Packages under node talk to the cluster only through the Kubernetes API
// (client-go); none of them imports the store or the apiserver.
package node
