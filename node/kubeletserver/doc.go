// Package kubeletserver is the kubelet's HTTPS server (port 10250): the
// apiserver proxies `kubectl logs` to GET /containerLogs/{ns}/{pod}/{container}
// and `kubectl exec` to /exec/{ns}/{pod}/{container}, as it does to a real
// kubelet.
//
// Exec speaks the remotecommand WebSocket protocol (v5.channel.k8s.io, and
// v4/base64 for older clients) with k8s.io/apimachinery's wsstream; SPDY is
// not served: kubectl 1.30+ tries WebSocket first and only falls back to
// SPDY when the upgrade is refused, which this server never does.
//
// One extension to the kubelet API: the apiserver may add
// containerID=containerd://ID (ContainerIDParam), the container it read
// from the pod status, which is how Kubernetes' kubelet resolves --previous;
// without it the server asks its ContainerFinder. An exec ends when its
// client goes away.
//
// Authentication: every request must present a TLS client certificate that
// chains to the cluster CA (Config.ClientCAs) and names the apiserver
// (CN kube-apiserver-kubelet-client) or an admin (O system:masters). The
// serving certificate is self-signed unless one is given, so the apiserver
// cannot verify it (it dials with InsecureSkipVerify, as kube-apiserver does
// without --kubelet-certificate-authority): someone able to intercept the
// node's traffic could impersonate the kubelet to the apiserver, though not
// the apiserver to the kubelet.
package kubeletserver
