package apiserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// kubeletContainerIDParam names the exact container for the kubelet
// (synod/node/kubeletserver.ContainerIDParam; apiserver does not import
// node packages): the one the pod status names, as Kubernetes' kubelet
// resolves it from its own status.
const kubeletContainerIDParam = "containerID"

// defaultKubeletPort is used when a Node does not report
// status.daemonEndpoints.kubeletEndpoint.port.
const defaultKubeletPort = 10250

// SetKubeletClient sets the TLS configuration the apiserver dials kubelets
// with for pods/log and pods/exec: its client certificate must chain to the
// cluster CA and name the apiserver (CN kube-apiserver-kubelet-client). Call
// it before serving. Kubelet serving certificates are self-signed, so unless
// tc.RootCAs is set the kubelet is not verified (InsecureSkipVerify), as
// kube-apiserver does without --kubelet-certificate-authority.
func (s *Server) SetKubeletClient(tc *tls.Config) {
	tc = tc.Clone()
	if tc.RootCAs == nil {
		tc.InsecureSkipVerify = true
	}
	tc.NextProtos = []string{"http/1.1"} // upgrades need HTTP/1.1
	s.kubelet = &http.Transport{
		TLSClientConfig:     tc,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
}

// Unwrap lets http.ResponseController (and so httputil.ReverseProxy's
// upgrade handling) reach the connection behind the metrics recorder.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

var podsGR = groupResource("", "pods")

// servePodProxy handles pods/log and pods/exec by proxying to the kubelet
// of the pod's node.
func (s *Server) servePodProxy(w http.ResponseWriter, r *http.Request, req *request) {
	var err error
	if req.sub == "log" {
		err = s.servePodLog(w, r, req)
	} else {
		err = s.servePodExec(w, r, req)
	}
	if err != nil {
		writeError(w, err)
	}
}

func (s *Server) podFor(ctx context.Context, req *request) (*corev1.Pod, error) {
	obj, err := s.store.get(ctx, req.res, req.namespace, req.name)
	if err != nil {
		return nil, err
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("stored pod %s/%s is a %T", req.namespace, req.name, obj))
	}
	return pod, nil
}

// podContainer resolves the container parameter as Kubernetes does: it
// may be left out only when the pod has exactly one container.
func podContainer(pod *corev1.Pod, name string) (string, error) {
	if name == "" {
		if len(pod.Spec.Containers) == 1 {
			return pod.Spec.Containers[0].Name, nil
		}
		var names, inits []string
		for _, c := range pod.Spec.Containers {
			names = append(names, c.Name)
		}
		for _, c := range pod.Spec.InitContainers {
			inits = append(inits, c.Name)
		}
		msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", pod.Name, names)
		if len(inits) > 0 {
			msg += fmt.Sprintf(" or one of the init containers: %v", inits)
		}
		return "", apierrors.NewBadRequest(msg)
	}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == name {
				return name, nil
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return name, nil
		}
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
}

func containerStatus(pod *corev1.Pod, name string) (corev1.ContainerStatus, bool) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if cs.Name == name {
				return cs, true
			}
		}
	}
	return corev1.ContainerStatus{}, false
}

// logContainerID is the kubelet's validateContainerLogStatus, answered from
// the pod status: the container whose log to show ("containerd://ID"), or
// Kubernetes' reason why there is none yet.
func logContainerID(pod *corev1.Pod, container string, previous bool) (string, error) {
	cs, ok := containerStatus(pod, container)
	bad := func(format string, args ...any) (string, error) {
		return "", apierrors.NewBadRequest(fmt.Sprintf(format, args...))
	}
	if !ok {
		if pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "" {
			return bad("container %q in pod %q is waiting to start: ContainerCreating", container, pod.Name)
		}
		return bad("container %q in pod %q is not available", container, pod.Name)
	}
	last := cs.LastTerminationState.Terminated
	switch {
	case previous:
		if last == nil || last.ContainerID == "" {
			return bad("previous terminated container %q in pod %q not found", container, pod.Name)
		}
		return last.ContainerID, nil
	case cs.State.Running != nil:
		return cs.ContainerID, nil
	case cs.State.Terminated != nil:
		if id := cs.State.Terminated.ContainerID; id != "" {
			return id, nil
		}
		if last != nil && last.ContainerID != "" {
			return last.ContainerID, nil
		}
		return bad("container %q in pod %q is terminated", container, pod.Name)
	case last != nil:
		if last.ContainerID == "" {
			return bad("container %q in pod %q is terminated", container, pod.Name)
		}
		return last.ContainerID, nil
	case cs.State.Waiting != nil:
		switch reason := cs.State.Waiting.Reason; reason {
		case "ErrImagePull":
			return bad("container %q in pod %q is waiting to start: image can't be pulled", container, pod.Name)
		case "ImagePullBackOff":
			return bad("container %q in pod %q is waiting to start: trying and failing to pull image", container, pod.Name)
		default:
			return bad("container %q in pod %q is waiting to start: %s", container, pod.Name, reason)
		}
	default:
		return bad("container %q in pod %q is waiting to start - no logs yet", container, pod.Name)
	}
}

// kubeletURL is https://NODE:PORT/{handler}/{ns}/{pod}/{container}.
func (s *Server) kubeletURL(ctx context.Context, pod *corev1.Pod, handler, container string) (*url.URL, error) {
	if pod.Spec.NodeName == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name))
	}
	if s.kubelet == nil {
		return nil, apierrors.NewServiceUnavailable("this apiserver has no kubelet client credentials")
	}
	nodes, ok := s.resources["/v1/nodes"]
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("no nodes resource"))
	}
	obj, err := s.store.get(ctx, nodes, "", pod.Spec.NodeName)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("node %s of pod %s not found", pod.Spec.NodeName, pod.Name))
		}
		return nil, err
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("stored node %s is a %T", pod.Spec.NodeName, obj))
	}
	host := ""
	for _, want := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == want && host == "" {
				host = a.Address
			}
		}
	}
	if host == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("node %s has no address to reach its kubelet", node.Name))
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = defaultKubeletPort
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(port)),
		Path: "/" + strings.Join([]string{handler, pod.Namespace, pod.Name, container}, "/")}, nil
}

// servePodLog proxies GET pods/{name}/log to the kubelet's containerLogs,
// flushing as bytes arrive so that -f streams.
func (s *Server) servePodLog(w http.ResponseWriter, r *http.Request, req *request) error {
	if r.Method != http.MethodGet {
		return apierrors.NewMethodNotSupported(podsGR, r.Method)
	}
	ctx := r.Context()
	pod, err := s.podFor(ctx, req)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	container, err := podContainer(pod, q.Get("container"))
	if err != nil {
		return err
	}
	out := url.Values{}
	for _, name := range []string{"follow", "previous", "timestamps", "insecureSkipTLSVerifyBackend"} {
		if v := q.Get(name); v != "" {
			b, perr := strconv.ParseBool(v)
			if perr != nil {
				return apierrors.NewBadRequest(fmt.Sprintf("invalid %s %q", name, v))
			}
			if name != "insecureSkipTLSVerifyBackend" {
				out.Set(name, strconv.FormatBool(b))
			}
		}
	}
	for _, name := range []string{"tailLines", "limitBytes", "sinceSeconds"} {
		if v := q.Get(name); v != "" {
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || n < 0 || (n == 0 && name != "tailLines") {
				return apierrors.NewBadRequest(fmt.Sprintf("invalid %s %q: must be a positive integer", name, v))
			}
			out.Set(name, v)
		}
	}
	if v := q.Get("sinceTime"); v != "" {
		if q.Get("sinceSeconds") != "" {
			return apierrors.NewBadRequest("at most one of sinceTime or sinceSeconds may be specified")
		}
		if _, perr := time.Parse(time.RFC3339, v); perr != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("invalid sinceTime %q", v))
		}
		out.Set("sinceTime", v)
	}
	id, err := logContainerID(pod, container, out.Get("previous") == "true")
	if err != nil {
		return err
	}
	if id != "" {
		out.Set(kubeletContainerIDParam, id)
	}
	u, err := s.kubeletURL(ctx, pod, "containerLogs", container)
	if err != nil {
		return err
	}
	u.RawQuery = out.Encode()
	kreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	resp, err := s.kubelet.RoundTrip(kreq)
	if err != nil {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("reach the kubelet of node %s: %v", pod.Spec.NodeName, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return kubeletError(resp, pod.Name)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // kubectl logs -f sees the stream open at once
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client left
			}
			_ = rc.Flush()
		}
		if rerr != nil {
			if rerr != io.EOF && ctx.Err() == nil {
				s.log.Debug("pod log stream ended", "pod", pod.Namespace+"/"+pod.Name, "err", rerr)
			}
			return nil
		}
	}
}

// kubeletError turns a kubelet's refusal into an API error with its text.
func kubeletError(resp *http.Response, pod string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = resp.Status
	}
	return apierrors.NewGenericServerResponse(resp.StatusCode, "get", podsGR, pod, msg, 0, false)
}

// servePodExec proxies pods/{name}/exec (a WebSocket or SPDY upgrade) to
// the kubelet's exec handler, copying the connection both ways.
func (s *Server) servePodExec(w http.ResponseWriter, r *http.Request, req *request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return apierrors.NewMethodNotSupported(podsGR, r.Method)
	}
	ctx := r.Context()
	pod, err := s.podFor(ctx, req)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	container, err := podContainer(pod, q.Get("container"))
	if err != nil {
		return err
	}
	if len(q["command"]) == 0 {
		return apierrors.NewBadRequest("you must specify at least one command for the container")
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return apierrors.NewBadRequest(fmt.Sprintf("cannot exec into a container in a completed pod; current phase is %s", pod.Status.Phase))
	}
	cs, ok := containerStatus(pod, container)
	if !ok || cs.State.Running == nil {
		return apierrors.NewBadRequest(fmt.Sprintf("unable to upgrade connection: container not found (%q)", container))
	}
	u, err := s.kubeletURL(ctx, pod, "exec", container)
	if err != nil {
		return err
	}
	q.Del("container")
	q.Del(kubeletContainerIDParam)
	if cs.ContainerID != "" {
		q.Set(kubeletContainerIDParam, cs.ContainerID)
	}
	u.RawQuery = q.Encode()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = u
			pr.Out.Host = u.Host
			// The caller's credentials are for the apiserver only; the
			// kubelet trusts the apiserver's client certificate.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Impersonate-User")
			pr.Out.Header.Del("Impersonate-Group")
		},
		Transport:     s.kubelet,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("reach the kubelet of node %s: %v", pod.Spec.NodeName, err)))
		},
		ErrorLog: nil,
	}
	proxy.ServeHTTP(w, r)
	return nil
}
