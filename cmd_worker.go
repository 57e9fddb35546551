package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"synod/node/apilb"
	"synod/node/gossip"
	"synod/node/iptbackend"
	"synod/node/kubelet"
	"synod/node/kubeletserver"
	"synod/node/network"
	"synod/node/proxy"
	"synod/node/runtime"
)

func workerCommand() *cli.Command {
	return &cli.Command{
		Name:  "worker",
		Usage: "run a worker: gossip member, local API balancer, kubelet on containerd and iptables service proxy",
		Description: "The worker joins the gossip pool through any member (--join), learns the apiservers from it and\n" +
			"serves a local balancer (--lb-addr) that its kubelet and proxy use, so it never depends on one master.\n" +
			"--kubeconfig gives the credentials and cluster CA; its server is replaced by the balancer.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "node name (default: the hostname)"},
			&cli.StringFlag{Name: "data-dir", Usage: "state: containerd, pod volumes and logs, network allocations (default \"<name>.worker\")"},
			&cli.StringFlag{Name: "kubeconfig", Usage: "credentials and cluster CA for the API (required unless --cleanup)"},
			&cli.StringSliceFlag{Name: "join", Usage: "gossip members to join through, HOST:PORT (repeat or comma-separate)"},
			&cli.StringFlag{Name: "gossip-addr", Value: "0.0.0.0:7946", Usage: "gossip bind address"},
			&cli.StringFlag{Name: "gossip-key-file", Usage: "gossip encryption key file (base64 AES key; see synod members)"},
			&cli.StringSliceFlag{Name: "server", Usage: "apiserver URLs known before gossip has news (repeat)"},
			&cli.StringFlag{Name: "lb-addr", Value: apilb.DefaultListenAddr, Usage: "local API balancer address"},
			&cli.StringFlag{Name: "node-ip", Usage: "the node's InternalIP (default: the gossip advertise address)"},
			&cli.StringFlag{Name: "node-labels", Usage: "labels to add to the Node, k=v,..."},
			&cli.StringFlag{Name: "register-with-taints", Usage: "taints for a new Node, k=v:Effect,..."},
			&cli.IntFlag{Name: "max-pods", Value: 110, Usage: "pods capacity"},
			&cli.IntFlag{Name: "kubelet-port", Value: kubeletserver.DefaultPort, Usage: "kubelet HTTPS port (kubectl logs/exec through the apiserver)"},
			&cli.StringFlag{Name: "containerd-socket", Usage: "containerd socket (default: start a private containerd under --data-dir)"},
			&cli.StringFlag{Name: "cluster-cidr", Value: "10.244.0.0/16", Usage: "the cluster's pod CIDR (the masters' --cluster-cidr)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve /metrics here (e.g. 127.0.0.1:10249; default off)"},
			&cli.StringFlag{Name: "iptables-backend", Value: "auto", Usage: "iptables backend for the service proxy and the pod network: auto (the one holding the host's rules; legacy on a host with none, as it restores large rule sets much faster), nft or legacy"},
			&cli.BoolFlag{Name: "cleanup", Usage: "remove the proxy's iptables chains and the pod network from this host, then exit"},
		},
		Action: runWorker,
	}
}

func runWorker(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().Slice())
	}
	log := logger(c)
	routeKlog(log)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.Bool("cleanup") {
		return workerCleanup(ctx, c, log)
	}
	name := c.String("name")
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return runtimeError(c, fmt.Errorf("no --name and no hostname: %w", err))
		}
		name = h
	}
	dataDir := c.String("data-dir")
	if dataDir == "" {
		dataDir = name + ".worker"
	}
	if c.String("kubeconfig") == "" {
		return usageError(c, "--kubeconfig is required")
	}
	labels, err := parseLabels(c.String("node-labels"))
	if err != nil {
		return usageError(c, "--node-labels: %v", err)
	}
	taints, err := parseTaints(c.String("register-with-taints"))
	if err != nil {
		return usageError(c, "--register-with-taints: %v", err)
	}
	gossipHost, gossipPort, err := splitHostPortDefault(c.String("gossip-addr"), gossip.DefaultPort)
	if err != nil {
		return usageError(c, "--gossip-addr: %v", err)
	}
	nodeIP := c.String("node-ip")
	if nodeIP != "" && net.ParseIP(nodeIP) == nil {
		return usageError(c, "--node-ip %q is not an IP address", nodeIP)
	}
	if _, _, err := net.ParseCIDR(c.String("cluster-cidr")); err != nil {
		return usageError(c, "--cluster-cidr: %v", err)
	}
	backend, err := iptbackend.Parse(c.String("iptables-backend"))
	if err != nil {
		return usageError(c, "--iptables-backend: %v", err)
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", c.String("kubeconfig"))
	if err != nil {
		return usageError(c, "--kubeconfig: %v", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return runtimeError(c, err)
	}
	log = log.With("node", name)
	reg := prometheus.NewRegistry()

	pool, err := gossip.Start(ctx, gossip.Config{Name: name, NodeName: name, BindAddr: gossipHost, BindPort: gossipPort,
		AdvertiseAddr: nodeIP, Role: gossip.RoleWorker, Version: version, KeyFile: c.String("gossip-key-file"),
		Join: c.StringSlice("join"), Logger: log.With("component", "gossip"), Registerer: reg})
	if err != nil {
		return runtimeError(c, err)
	}
	defer pool.Leave(2 * time.Second)
	if nodeIP == "" {
		nodeIP, _, _ = net.SplitHostPort(pool.LocalAddr())
	}
	lb, err := apilb.Start(ctx, apilb.Config{ListenAddr: c.String("lb-addr"), Servers: c.StringSlice("server"), Source: pool,
		Logger: log.With("component", "apilb"), Registerer: reg})
	if err != nil {
		return runtimeError(c, err)
	}
	// Every API call of this worker goes through the local balancer; TLS
	// is end to end (each master's certificate is valid for 127.0.0.1).
	restCfg.Host = lb.URL()
	restCfg.QPS, restCfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return runtimeError(c, err)
	}
	rt, err := runtime.Start(ctx, runtime.Config{Socket: c.String("containerd-socket"), StateDir: filepath.Join(dataDir, "cri"),
		Logger: log.With("component", "runtime"), Registerer: reg})
	if err != nil {
		return runtimeError(c, err)
	}
	defer rt.Close()
	log.Info("containerd", "socket", rt.Socket())
	clusterCIDR := c.String("cluster-cidr")
	// One backend for both the pod network's and the proxy's chains,
	// chosen before either writes a rule.
	ipt, why, err := iptbackend.Resolve(ctx, backend)
	if err != nil {
		return runtimeError(c, err)
	}
	log.Info("iptables backend", "backend", ipt.Backend, "why", why)
	iptRunner, err := proxy.NewRunner("", ipt)
	if err != nil {
		return runtimeError(c, err)
	}
	kl, err := kubelet.New(kubelet.Config{Client: client, NodeName: name, NodeIP: nodeIP, Runtime: rt,
		Network: func(ctx context.Context, podCIDR string) (kubelet.Network, error) {
			n, err := network.New(network.Config{PodCIDR: podCIDR, ClusterCIDR: clusterCIDR, StateDir: filepath.Join(dataDir, "network"),
				IPTables: ipt, Logger: log.With("component", "network"), Registerer: reg})
			if err != nil {
				return nil, err
			}
			return n, n.EnsureHost(ctx)
		},
		StateDir: filepath.Join(dataDir, "kubelet"), Labels: labels, Taints: taints, MaxPods: c.Int("max-pods"), KubeletPort: c.Int("kubelet-port"),
		Logger: log.With("component", "kubelet"), Registerer: reg})
	if err != nil {
		return runtimeError(c, err)
	}
	// The kubelet server: kubectl logs and exec arrive here from an
	// apiserver that proves itself with a cluster-CA client certificate.
	cas, err := kubeletserver.ClientCAsFromREST(restCfg)
	if err != nil {
		return runtimeError(c, err)
	}
	if _, err := kubeletserver.Start(ctx, kubeletserver.Config{
		Addr:       net.JoinHostPort(nodeIP, strconv.Itoa(c.Int("kubelet-port"))),
		Containers: kl, Runtime: rt, ClientCAs: cas, Hosts: []string{nodeIP, name},
		Logger: log.With("component", "kubelet-server"), Registerer: reg}); err != nil {
		return runtimeError(c, err)
	}
	px, err := proxy.New(proxy.Config{Client: client, NodeName: name, NodeIPs: []net.IP{net.ParseIP(nodeIP)}, ClusterCIDR: clusterCIDR,
		IPTables: iptRunner, Logger: log.With("component", "proxy"), Registerer: reg})
	if err != nil {
		return runtimeError(c, err)
	}
	if addr := c.String("metrics-addr"); addr != "" {
		if err := serveWorkerMetrics(ctx, addr, reg, log); err != nil {
			return runtimeError(c, err)
		}
	}
	log.Info("worker running", "api-balancer", lb.URL(), "gossip", pool.LocalAddr(), "node-ip", nodeIP)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, run := range []func(context.Context) error{kl.Run, px.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
				stop()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return runtimeError(c, err)
	}
	log.Info("worker stopped")
	return nil
}

// workerCleanup removes what a worker programmed into this host's kernel,
// in both iptables backends (the host may have switched since).
// Containers are left to containerd (stop them with the pods).
func workerCleanup(ctx context.Context, c *cli.Context, log *slog.Logger) error {
	dataDir := c.String("data-dir")
	if dataDir == "" {
		dataDir = c.String("name") + ".worker"
	}
	var errs []error
	cleaned := 0
	for _, b := range []iptbackend.Backend{iptbackend.Legacy, iptbackend.NFT} {
		tools, err := iptbackend.ToolsFor(b)
		if err != nil {
			continue // not installed: nothing of ours can be there
		}
		cleaned++
		r, err := proxy.NewRunner("", tools)
		if err == nil {
			err = proxy.Cleanup(ctx, r)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b, err))
		}
		// Cleanup removes the bridge, routes and chains by name, whatever
		// the podCIDR was; New only needs a valid one.
		n, err := network.New(network.Config{PodCIDR: "10.255.255.0/29", StateDir: filepath.Join(dataDir, "network"), IPTables: tools, Logger: log})
		if err == nil {
			err = n.Cleanup(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b, err))
		}
	}
	if cleaned == 0 {
		errs = append(errs, errors.New("neither iptables-legacy nor iptables-nft is installed"))
	}
	if err := errors.Join(errs...); err != nil {
		return runtimeError(c, err)
	}
	log.Info("worker cleanup done")
	return nil
}

func serveWorkerMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("metrics serving", "addr", ln.Addr().String())
	return nil
}

// splitHostPortDefault reads HOST:PORT or HOST (port def).
func splitHostPortDefault(s string, def int) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s, def, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", s)
	}
	return host, p, nil
}
