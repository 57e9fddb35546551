// Package kubelet is synod's node agent core: it registers the Node, keeps
// its status and Lease fresh, and runs the pods bound to the node on
// containerd, writing their status back through the Kubernetes API.
//
// It is glue between three things it does not implement itself:
//
//   - the API, through client-go only: an informer on pods with
//     spec.nodeName=<node>, one on the own Node (for spec.podCIDR), and
//     writes to nodes/status, pods/status, leases and events;
//   - a container runtime (the Runtime interface, satisfied by
//     synod/node/runtime): images, containers, exec;
//   - a pod network (the Network interface, satisfied by
//     synod/node/network), built once the controller-manager's node IPAM
//     has set spec.podCIDR, through Config.Network.
//
// Pods are run by one worker goroutine per pod, as the real kubelet's
// podWorkers do: informer events, container exits, probe results, backoff
// timers and a periodic resync all "kick" the worker, which then compares
// the pod's spec with what runs and acts (create the pod's network
// namespace and network, prepare volumes, start init containers one by
// one, then the containers, restart them by restartPolicy with Kubernetes'
// crash-loop backoff, kill them when a liveness probe fails) and writes
// the status when it changed. Deleting a pod (deletionTimestamp) stops its
// containers with the pod's grace period, tears its network down and then
// deletes the pod object with grace 0 and a UID precondition, which is how
// the kubelet confirms a graceful deletion.
//
// When the Network can set routes (synod/node/network can), the kubelet
// also watches all Nodes and routes every other node's podCIDR via its
// InternalIP (host-gw), so pods on different workers reach each other.
//
// ParseNodeLabels and ParseTaints parse the --node-labels and
// --register-with-taints flag values into Config.Labels and Config.Taints.
//
// The runtime keeps everything a restarted kubelet needs in container
// labels (pod UID, container name, restart count, node), so on start the
// kubelet adopts running containers instead of restarting them, and cleans
// up containers, networks and directories of pods that were deleted while
// it was down.
//
// Files on the node live under Config.StateDir:
//
//	pods/<uid>/volumes/<name>/                   emptyDir, configMap and secret volumes
//	logs/<namespace>_<name>_<uid>/<container>/<restartCount>.log   CRI-format logs
//
// TODO: the kubelet HTTPS server (logs, exec, attach, port-forward that the
// apiserver proxies to for `kubectl logs` and `kubectl exec`) is not here
// yet; the log files and Runtime.Exec it needs are.
//
// Not implemented: sidecar (restartable) init containers, ephemeral
// containers, readiness gates, activeDeadlineSeconds, gRPC probes (they
// always succeed), projected/downwardAPI volumes, eviction, static pods,
// refreshing configMap/secret volume contents after the container started.
package kubelet
