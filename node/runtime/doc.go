// Package runtime is the kubelet's container runtime layer: a small,
// kubelet-shaped API over the containerd v1.7 Go client, talking to
// Debian's containerd 1.6 daemon (only the 1.6-era services: containers,
// tasks, content, images, snapshots, leases, events).
//
// What it does, and the choices behind it:
//
//   - Daemon: with Config.Socket empty, Start runs a private
//     `containerd --config C --root R --state S --address SOCK` under
//     StateDir (CRI plugin disabled) and Close stops it by pid. A daemon
//     left running by a previous process with the same StateDir (the
//     kubelet was SIGKILLed) is adopted, not duplicated: containerd keeps
//     the shims and therefore the containers alive across kubelet restarts.
//   - Images: ImportImage takes docker-save and OCI-layout tarballs and
//     unpacks them for overlayfs; PullImage pulls from a registry with
//     short dial/header timeouts and an overall Config.PullTimeout, so an
//     unreachable registry fails fast with ErrImagePull.
//   - Containers: one containerd container per Kubernetes container
//     attempt (the kubelet chooses the ID, e.g. NewContainerID, and keeps
//     pod UID / name / attempt in labels). A pod's containers share a
//     network namespace by path (ContainerSpec.NetNSPath): this package
//     does not create network namespaces; the pod-network code creates
//     and configures them (e.g. `ip netns add` → /run/netns/NAME) and
//     hands the path in. No pause container is needed for that.
//   - Logs: the container's stdout/stderr go through FIFOs under StateDir
//     into the file at ContainerSpec.LogPath in the CRI log format
//     (`2016-10-06T00:17:09.669794202Z stdout F line`), which is what
//     `kubectl logs` (--tail, -f, --previous) serves. The shim keeps the
//     FIFOs open, so a restarted runtime re-attaches to running
//     containers' FIFOs (in Start) and output written meanwhile (up to
//     the pipe buffers) is not lost.
//   - ReadLog serves such a file as `kubectl logs` shows it (--tail,
//     --timestamps, --since-time, --limit-bytes, -f); LogDone is the
//     "stop following" condition.
//   - State survives the client: started-at and OOM kills are recorded in
//     container labels, exit codes and times stay in containerd's task
//     until RemoveContainer, so a fresh Runtime reports the same states.
//   - Restart policy and backoff are the kubelet's job, not this package's
//     (containerd's restart monitor has no backoff).
package runtime
