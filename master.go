package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/rest"

	"synod/apiserver"
	"synod/apiserver/auth"
	"synod/components"
	"synod/internal/pki"
	"synod/raftstore"
)

// apiOptions are the apiserver flags of `synod master` (kube-apiserver's
// names where they mean the same).
type apiOptions struct {
	securePort  int    // --secure-port; 0 turns the API off
	bindAddress string // --bind-address
	tlsCert     string // --tls-cert-file
	tlsKey      string // --tls-private-key-file
	clientCA    string // --client-ca-file
	tokenFile   string // --token-auth-file
	pkiDir      string // --pki-dir: CA for serving and client certs when no files are given
	serviceCIDR string // --service-cluster-ip-range

	components components.Config     // scheduler and controller-manager flags
	gossip     gossipOptions         // --gossip-addr and friends
	registry   prometheus.Registerer // the API's /metrics, set by startAPI
}

// runMasterServices runs one master: the store, and the Kubernetes API in
// front of it, until ctx ends or the member is removed from the cluster.
func runMasterServices(ctx context.Context, cfg raftstore.Config, api apiOptions, log *slog.Logger) error {
	store, err := raftstore.Open(cfg, log)
	if err != nil {
		return err
	}
	var stopAPI func()
	componentsDone := make(chan struct{})
	close(componentsDone)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if api.securePort > 0 {
		var loopback *rest.Config
		stopAPI, loopback, err = startAPI(ctx, cfg, &api, log)
		if err != nil {
			store.Close()
			return err
		}
		if api.gossip.addr != "" {
			pool, err := startGossip(ctx, cfg.Name, api.gossip, api, api.registry, log)
			if err != nil {
				stopAPI()
				store.Close()
				return err
			}
			defer pool.Leave(2 * time.Second)
		}
		if api.components.Scheduler || len(api.components.Controllers) > 0 {
			cc := api.components
			cc.RestConfig = loopback
			cc.Identity = fmt.Sprintf("%s_%d", cfg.Name, os.Getpid())
			cc.Registerer = api.registry
			cc.Logger = log
			componentsDone = make(chan struct{})
			go func() {
				defer close(componentsDone)
				if err := components.Run(ctx, cc); err != nil {
					log.Error("components stopped", "err", err)
				}
			}()
		}
	}
	select {
	case <-ctx.Done():
	case <-store.Removed():
		log.Warn("this member was removed from the cluster; shutting down")
	}
	cancel()
	// The components stop their work and release their leases while the
	// API and the store still serve, so the next master takes over at once.
	<-componentsDone
	if stopAPI != nil {
		stopAPI()
	}
	return store.Close()
}

// startAPI serves the Kubernetes API over HTTPS on --secure-port. It
// returns how to stop it and a loopback client config for the components.
func startAPI(ctx context.Context, cfg raftstore.Config, api *apiOptions, log *slog.Logger) (func(), *rest.Config, error) {
	kv, err := clientv3.New(clientv3.Config{Endpoints: cfg.ListenClientURLs[:1], DialTimeout: 5 * time.Second,
		TLS: storeClientTLS(cfg.ClientTLS), Logger: zap.NewNop()})
	if err != nil {
		return nil, nil, fmt.Errorf("connect the apiserver to the store: %w", err)
	}
	fail := func(err error) (func(), *rest.Config, error) {
		kv.Close()
		return nil, nil, err
	}
	srv, err := apiserver.New(apiserver.Config{Store: kv, ServiceCIDR: api.serviceCIDR, Logger: log})
	if err != nil {
		return fail(err)
	}
	api.registry = srv.Registry()
	serving, clientCAs, kubeletClient, err := apiCertificates(cfg, *api, log)
	if err != nil {
		return fail(err)
	}
	if kubeletClient != nil {
		// pods/log and pods/exec go to the kubelets with this certificate.
		srv.SetKubeletClient(&tls.Config{Certificates: []tls.Certificate{*kubeletClient}, MinVersion: tls.VersionTLS12})
	}
	lb, err := newLoopback(api.securePort, api.bindAddress)
	if err != nil {
		return fail(err)
	}
	authns := []auth.Authenticator{lb.authenticator, auth.NewX509(clientCAs)}
	if api.tokenFile != "" {
		tokens, err := auth.NewTokenFile(api.tokenFile)
		if err != nil {
			return fail(fmt.Errorf("--token-auth-file: %w", err))
		}
		authns = append(authns, tokens)
	}
	srv.SetAuth(srv.NewAuth(auth.Union(authns...)))
	addr := net.JoinHostPort(api.bindAddress, strconv.Itoa(api.securePort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fail(fmt.Errorf("listen on --secure-port %s: %w", addr, err))
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{serving}, GetCertificate: lb.getCertificate, ClientCAs: clientCAs,
			ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go hs.ServeTLS(ln, "", "")
	bctx, cancel := context.WithCancel(ctx)
	go bootstrapAPI(bctx, srv, log)
	log.Info("Kubernetes API serving", "url", "https://"+addr)
	return func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close() // watches never end on their own
		}
		kv.Close()
	}, lb.config, nil
}

// bootstrapAPI creates the system namespaces and roles once the store has a
// leader, retrying until it succeeds or the master stops.
func bootstrapAPI(ctx context.Context, srv *apiserver.Server, log *slog.Logger) {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		err := srv.Bootstrap(ctx)
		if err == nil {
			return
		}
		log.Debug("apiserver bootstrap waiting for the store", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// storeClientTLS is how the apiserver reaches its own store over TLS: with
// the store's serving certificate as client certificate (so client-cert-auth
// admits it) and, for verification, the CA that signs clients.
func storeClientTLS(server *tls.Config) *tls.Config {
	if server == nil {
		return nil
	}
	c := &tls.Config{Certificates: server.Certificates, RootCAs: server.ClientCAs, ServerName: "127.0.0.1"}
	if c.RootCAs == nil {
		// No CA given for the store: it is this very process on loopback.
		c.InsecureSkipVerify = true
	}
	return c
}

// apiCertificates loads --tls-cert-file/--tls-private-key-file and
// --client-ca-file, or, when they are not given, makes them from the CA in
// --pki-dir (created if missing) and writes an admin kubeconfig there.
//
// With the CA at hand it also issues the certificate the apiserver presents
// to kubelets (kubectl logs/exec); with operator-given files it cannot, and
// returns nil for it.
func apiCertificates(cfg raftstore.Config, api apiOptions, log *slog.Logger) (tls.Certificate, *x509.CertPool, *tls.Certificate, error) {
	var ca *pki.CA
	if api.tlsCert == "" || api.clientCA == "" {
		dir := api.pkiDir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "pki")
		}
		var err error
		if ca, err = pki.EnsureCA(dir); err != nil {
			return tls.Certificate{}, nil, nil, fmt.Errorf("--pki-dir: %w", err)
		}
		api.pkiDir = dir
	}
	var serving tls.Certificate
	var err error
	if api.tlsCert != "" {
		serving, err = tls.LoadX509KeyPair(api.tlsCert, api.tlsKey)
	} else {
		hosts := []string{api.bindAddress}
		if h, herr := os.Hostname(); herr == nil {
			hosts = append(hosts, h)
		}
		var certPEM, keyPEM []byte
		if certPEM, keyPEM, err = ca.IssueServing(hosts, 365*24*time.Hour); err == nil {
			serving, err = tls.X509KeyPair(certPEM, keyPEM)
		}
	}
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("apiserver serving certificate: %w", err)
	}
	var pool *x509.CertPool
	if api.clientCA != "" {
		data, err := os.ReadFile(api.clientCA)
		if err != nil {
			return tls.Certificate{}, nil, nil, fmt.Errorf("--client-ca-file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return tls.Certificate{}, nil, nil, fmt.Errorf("--client-ca-file %s holds no PEM certificate", api.clientCA)
		}
	} else {
		pool = ca.Pool()
	}
	if ca != nil && api.tlsCert == "" {
		path := filepath.Join(api.pkiDir, "admin.kubeconfig")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			certPEM, keyPEM, err := ca.IssueClient("admin", []string{auth.SystemMasters}, 365*24*time.Hour)
			if err == nil {
				host := api.bindAddress
				if host == "0.0.0.0" || host == "" {
					host = "127.0.0.1"
				}
				err = pki.WriteKubeconfig(path, "https://"+net.JoinHostPort(host, strconv.Itoa(api.securePort)), ca.CertPEM(), certPEM, keyPEM, "admin")
			}
			if err != nil {
				log.Warn("could not write an admin kubeconfig", "path", path, "err", err)
			} else {
				log.Info("wrote an admin kubeconfig", "path", path)
			}
		}
	}
	var kubeletClient *tls.Certificate
	if ca != nil {
		certPEM, keyPEM, err := ca.IssueClient("kube-apiserver-kubelet-client", nil, pki.DefaultValidity)
		if err == nil {
			var kc tls.Certificate
			if kc, err = tls.X509KeyPair(certPEM, keyPEM); err == nil {
				kubeletClient = &kc
			}
		}
		if err != nil {
			return tls.Certificate{}, nil, nil, fmt.Errorf("kubelet client certificate: %w", err)
		}
	}
	return serving, pool, kubeletClient, nil
}
