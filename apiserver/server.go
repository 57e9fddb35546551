package apiserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimachineryversion "k8s.io/apimachinery/pkg/version"

	"synod/apiserver/auth"
	"synod/apiserver/discovery"
	"synod/apiserver/resource"
)

// Authorizer decides one request. The auth package provides the real ones.
type Authorizer interface {
	// Authenticate identifies the caller; ok=false means anonymous (401).
	Authenticate(r *http.Request) (user string, groups []string, ok bool, err error)
	// Authorize decides whether user may do the request; reason explains a denial.
	Authorize(user string, groups []string, a Attributes) (allowed bool, reason string, err error)
}

// Attributes describe a request for authorization.
type Attributes struct {
	Verb, Namespace, APIGroup, Resource, Subresource, Name, Path string
	ResourceRequest                                              bool
}

// Config is what an apiserver needs.
type Config struct {
	// Store is an etcd client for the raftstore (the master's own client URL).
	Store *clientv3.Client
	// ServiceCIDR is --service-cluster-ip-range (default 10.96.0.0/12).
	ServiceCIDR string
	// Auth authenticates and authorizes; nil allows everything (tests only).
	Auth   Authorizer
	Logger *slog.Logger
	// Extra handles paths outside the resource API (discovery, /version,
	// /openapi, access reviews); it returns false for paths it does not serve.
	Extra func(w http.ResponseWriter, r *http.Request) bool
}

// Server is the REST layer: http.Handler for the Kubernetes API.
type Server struct {
	store        *storage
	resources    resourceIndex
	resourceList []resource.Resource
	serviceCIDR  *net.IPNet
	auth         Authorizer
	extra        func(w http.ResponseWriter, r *http.Request) bool
	hooks        hooks
	log          *slog.Logger
	kubelet      *http.Transport // SetKubeletClient; pods/log and pods/exec

	reg            *prometheus.Registry
	metricsHandler http.Handler
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
}

// DefaultServiceCIDR is Kubernetes' default service range.
const DefaultServiceCIDR = "10.96.0.0/12"

// New builds a Server; Bootstrap must run once before it serves.
func New(cfg Config) (*Server, error) {
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	_, cidr, err := net.ParseCIDR(cfg.ServiceCIDR)
	if err != nil || cidr.IP.To4() == nil {
		return nil, fmt.Errorf("--service-cluster-ip-range %q: want an IPv4 CIDR such as %s", cfg.ServiceCIDR, DefaultServiceCIDR)
	}
	if ones, bits := cidr.Mask.Size(); bits-ones < 3 || bits-ones > 20 {
		return nil, fmt.Errorf("--service-cluster-ip-range %q: want a prefix between /12 and /29", cfg.ServiceCIDR)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	all := resource.All()
	s := &Server{
		store:        &storage{kv: cfg.Store},
		resources:    newResourceIndex(all),
		resourceList: all,
		serviceCIDR:  cidr,
		auth:         cfg.Auth,
		extra:        cfg.Extra,
		hooks:        defaultHooks(),
		log:          cfg.Logger.With("component", "apiserver"),
		reg:          prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiserver_request_total",
			Help: "API requests by verb, resource and HTTP code."}, []string{"verb", "resource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "apiserver_request_duration_seconds",
			Help: "API request latency (watches excluded).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"verb", "resource"}),
	}
	d := discovery.New(all, apimachineryversion.Info{})
	d.AddResource(discovery.AuthorizationV1, discovery.SelfSubjectAccessReviews)
	s.extra = func(w http.ResponseWriter, r *http.Request) bool {
		if d.ServeHTTP(w, r) {
			return true
		}
		return cfg.Extra != nil && cfg.Extra(w, r)
	}
	s.metricsHandler = promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
	s.reg.MustRegister(s.requests, s.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s, nil
}

// Registry returns the server's Prometheus registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Bootstrap creates what every cluster has: the system namespaces.
func (s *Server) Bootstrap(ctx context.Context) error { return s.bootstrap(ctx, s.log) }

// statusRecorder remembers the status code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	verb, res := s.serve(rec, r)
	s.requests.WithLabelValues(verb, res, strconv.Itoa(rec.code)).Inc()
	if verb != "watch" {
		s.latency.WithLabelValues(verb, res).Observe(time.Since(start).Seconds())
	}
}

// serve authenticates, routes and authorizes one request; it returns the
// verb and resource for metrics.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) (string, string) {
	// Health and version are public, as kube-apiserver's
	// system:public-info-viewer role grants to unauthenticated callers.
	switch r.URL.Path {
	case "/healthz", "/livez", "/readyz":
		s.serveHealth(w, r)
		return "get", ""
	case "/version":
		if s.extra(w, r) {
			return "get", ""
		}
	}
	user, groups := "", []string(nil)
	if s.auth != nil {
		u, g, ok, err := s.auth.Authenticate(r)
		if err != nil || !ok {
			writeError(w, apierrors.NewUnauthorized("Unauthorized"))
			return "unknown", ""
		}
		user, groups = u, g
	}
	if r.URL.Path == "/metrics" {
		if s.allowed(w, r, user, groups, Attributes{Verb: "get", Path: r.URL.Path}) {
			s.metricsHandler.ServeHTTP(w, r)
		}
		return "get", ""
	}
	if r.URL.Path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" && r.Method == http.MethodPost {
		s.serveSelfSubjectAccessReview(w, r, user, groups)
		return "create", "selfsubjectaccessreviews"
	}
	req, isResource, err := s.resources.parse(r)
	if !isResource {
		if !s.allowed(w, r, user, groups, Attributes{Verb: strings.ToLower(r.Method), Path: r.URL.Path}) {
			return "get", ""
		}
		if s.extra(w, r) {
			return "get", ""
		}
		writeError(w, apierrors.NewNotFound(groupResource("", ""), r.URL.Path))
		return "get", ""
	}
	if err != nil {
		writeError(w, err)
		return "unknown", ""
	}
	a := Attributes{Verb: req.verb, Namespace: req.namespace, APIGroup: req.res.Group, Resource: req.res.Name,
		Subresource: req.sub, Name: req.name, ResourceRequest: true}
	if req.sub == "binding" || req.sub == "exec" {
		a.Verb = "create"
	}
	if !s.allowed(w, r, user, groups, a) {
		return req.verb, req.res.Name
	}
	s.serveResource(w, r, req)
	return req.verb, req.res.Name
}

func (s *Server) allowed(w http.ResponseWriter, r *http.Request, user string, groups []string, a Attributes) bool {
	if s.auth == nil {
		return true
	}
	ok, reason, err := s.auth.Authorize(user, groups, a)
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return false
	}
	if !ok {
		writeError(w, auth.ForbiddenStatus(toAuthAttributes(user, groups, a), reason))
		return false
	}
	return true
}

// serveHealth answers /healthz, /livez and /readyz: ok once the store
// answers a linearizable read.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if r.URL.Path != "/livez" {
		if _, err := s.store.kv.Get(ctx, registryPrefix+"health"); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "[-]etcd failed: %v\nhealthz check failed\n", err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "ok")
}
