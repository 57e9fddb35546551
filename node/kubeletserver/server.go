package kubeletserver

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"

	"synod/node/runtime"
)

// DefaultPort is the kubelet's port (--kubelet-port).
const DefaultPort = 10250

// APIServerClientCN is the common name of the client certificate the
// apiserver presents to kubelets (kubeadm's name for it).
const APIServerClientCN = "kube-apiserver-kubelet-client"

// ErrNotFound is wrapped by a ContainerFinder when the pod or container is
// not on this node.
var ErrNotFound = errors.New("not found")

// ContainerFinder finds the runtime container behind a pod's container;
// *synod/node/kubelet.Kubelet satisfies it. previous asks for the attempt
// before the current one (kubectl logs --previous).
type ContainerFinder interface {
	FindContainer(ctx context.Context, namespace, pod, container string, previous bool) (runtime.State, error)
}

// Runtime is what the server needs from the container runtime;
// *synod/node/runtime.Runtime satisfies it.
type Runtime interface {
	ContainerStatus(ctx context.Context, id string) (runtime.State, error)
	ExecStream(ctx context.Context, id string, o runtime.ExecOptions) (int, error)
	// LogDone reports that the container's log is complete (ends -f).
	LogDone(ctx context.Context, id string) bool
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address, e.g. "10.0.0.5:10250".
	Addr       string
	Containers ContainerFinder
	Runtime    Runtime
	// ClientCAs verifies client certificates (the cluster CA); required.
	ClientCAs *x509.CertPool
	// Certificate is the serving certificate; self-signed for Hosts if empty.
	Certificate *tls.Certificate
	// Hosts go into a self-signed certificate (IPs or DNS names).
	Hosts      []string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Server is a running kubelet server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	ln       net.Listener
	hs       *http.Server
	requests *prometheus.CounterVec
}

// Start listens on cfg.Addr and serves until ctx ends.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	switch {
	case cfg.Containers == nil || cfg.Runtime == nil:
		return nil, errors.New("kubeletserver: Config.Containers and Config.Runtime are required")
	case cfg.ClientCAs == nil:
		return nil, errors.New("kubeletserver: Config.ClientCAs is required (the cluster CA)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cert := cfg.Certificate
	if cert == nil {
		c, err := SelfSigned(cfg.Hosts)
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	s := &Server{cfg: cfg, log: cfg.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_server_requests_total",
			Help: "Kubelet server requests by handler and HTTP code."}, []string{"handler", "code"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.requests); err != nil {
			return nil, fmt.Errorf("kubeletserver: register metrics: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("kubeletserver: listen on %s: %w", cfg.Addr, err)
	}
	s.ln = ln
	s.hs = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{*cert}, ClientCAs: cfg.ClientCAs,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go func() {
		if err := s.hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("kubelet server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		s.hs.Close() // follows and execs end with their connections
	}()
	s.log.Info("kubelet server listening", "addr", ln.Addr().String())
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the port the server listens on (for the Node's daemonEndpoints).
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// authorized accepts the apiserver's client certificate and admins'. The TLS
// layer has already verified the chain against ClientCAs.
func authorized(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	subj := r.TLS.PeerCertificates[0].Subject
	return subj.CommonName == APIServerClientCN || slices.Contains(subj.Organization, "system:masters")
}

type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) { c.code = code; c.ResponseWriter.WriteHeader(code) }

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Hijack is for golang.org/x/net/websocket, which asserts http.Hijacker
// instead of using a ResponseController.
func (c *codeRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c.code = http.StatusSwitchingProtocols
	return http.NewResponseController(c.ResponseWriter).Hijack()
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
	handler := "other"
	defer func() { s.requests.WithLabelValues(handler, strconv.Itoa(rec.code)).Inc() }()
	if !authorized(r) {
		http.Error(rec, "Forbidden: the kubelet serves only the apiserver", http.StatusForbidden)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 4 {
		if r.URL.Path == "/healthz" {
			handler = "healthz"
			fmt.Fprint(rec, "ok")
			return
		}
		http.NotFound(rec, r)
		return
	}
	switch parts[0] {
	case "containerLogs":
		handler = "containerLogs"
		if r.Method != http.MethodGet {
			http.Error(rec, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.serveLogs(rec, r, parts[1], parts[2], parts[3])
	case "exec":
		handler = "exec"
		s.serveExec(rec, r, parts[1], parts[2], parts[3])
	default:
		http.NotFound(rec, r)
	}
}

// ContainerIDParam is a synod extension to the kubelet API: the apiserver
// names the exact container ("containerd://ID") it read from the pod
// status, so that --previous during a crash-loop backoff shows the attempt
// the status calls lastState, as Kubernetes' kubelet does. Without it the
// server asks Config.Containers.
const ContainerIDParam = "containerID"

// find looks the container up and writes an error if it is not there.
func (s *Server) find(w http.ResponseWriter, r *http.Request, ns, pod, container string, previous bool) (runtime.State, bool) {
	var (
		st  runtime.State
		err error
	)
	if id := strings.TrimPrefix(r.URL.Query().Get(ContainerIDParam), "containerd://"); id != "" {
		st, err = s.cfg.Runtime.ContainerStatus(r.Context(), id)
		if err == nil && st.Labels[runtime.LabelContainerName] != container {
			err = fmt.Errorf("container %s is not %q of pod %s/%s: %w", id, container, ns, pod, ErrNotFound)
		}
	} else {
		st, err = s.cfg.Containers.FindContainer(r.Context(), ns, pod, container, previous)
	}
	switch {
	case errors.Is(err, ErrNotFound) || errors.Is(err, os.ErrNotExist) || errdefs.IsNotFound(err):
		http.Error(w, err.Error(), http.StatusNotFound)
		return st, false
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return st, false
	}
	return st, true
}

// SelfSigned makes a one-year ECDSA serving certificate for hosts.
func SelfSigned(hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("kubeletserver: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("kubeletserver: serial: %w", err)
	}
	name := "kubelet"
	if len(hosts) > 0 {
		name = hosts[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name + "@" + strconv.FormatInt(time.Now().Unix(), 10)},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("kubeletserver: self-sign: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
