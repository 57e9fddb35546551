package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"synod/internal/hollow"
	"synod/node/apilb"
)

func hollowCommand() *cli.Command {
	return &cli.Command{
		Name:  "hollow-nodes",
		Usage: "run hollow nodes (kubemark-style): Nodes that heartbeat and report pods Running, with no containers",
		Description: "For testing the scheduler and controllers before real workers exist. Each node registers,\n" +
			"renews its Lease in kube-node-lease and reports the pods bound to it as Running and Ready;\n" +
			"restartPolicy Never/OnFailure pods finish after annotation hollow.synod.io/run-for (default 1s)\n" +
			"with exit code hollow.synod.io/exit-code. Stop the process to make its nodes go silent.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "kubeconfig", Required: true, Usage: "kubeconfig to reach the API with"},
			&cli.StringSliceFlag{Name: "server", Usage: "API URLs to fail over between (default: the kubeconfig's server)"},
			&cli.IntFlag{Name: "count", Value: 1, Usage: "number of nodes"},
			&cli.StringFlag{Name: "name-prefix", Value: "hollow-", Usage: "node names are <prefix><n> (from 1), or exactly the prefix with --count 1 and --exact-name"},
			&cli.BoolFlag{Name: "exact-name", Usage: "with --count 1: the node is named --name-prefix"},
			&cli.StringFlag{Name: "cpu", Value: "4", Usage: "cpu capacity per node"},
			&cli.StringFlag{Name: "memory", Value: "8Gi", Usage: "memory capacity per node"},
			&cli.IntFlag{Name: "max-pods", Value: 110, Usage: "pods capacity per node"},
			&cli.StringFlag{Name: "node-labels", Usage: "labels to add, k=v,k2=v2"},
			&cli.StringFlag{Name: "register-with-taints", Usage: "taints to register with, k=v:Effect,..."},
			&cli.DurationFlag{Name: "lease-renew-interval", Value: 2 * time.Second, Usage: "how often each node renews its Lease"},
		},
		Action: runHollow,
	}
}

func runHollow(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().Slice())
	}
	if c.Int("count") < 1 || (c.Bool("exact-name") && c.Int("count") != 1) {
		return usageError(c, "--count must be at least 1 (exactly 1 with --exact-name)")
	}
	labels, err := parseLabels(c.String("node-labels"))
	if err != nil {
		return usageError(c, "--node-labels: %v", err)
	}
	taints, err := parseTaints(c.String("register-with-taints"))
	if err != nil {
		return usageError(c, "--register-with-taints: %v", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.String("kubeconfig"))
	if err != nil {
		return usageError(c, "--kubeconfig: %v", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logger(c)
	if servers := c.StringSlice("server"); len(servers) > 0 {
		// The workers' local balancer, so the nodes outlive any one master.
		lb, err := apilb.Start(ctx, apilb.Config{ListenAddr: "127.0.0.1:0", Servers: servers, Logger: log.With("component", "apilb")})
		if err != nil {
			return usageError(c, "--server: %v", err)
		}
		cfg.Host = lb.URL()
	}
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return runtimeError(c, err)
	}
	var specs []hollow.NodeSpec
	for i := 1; i <= c.Int("count"); i++ {
		name := fmt.Sprintf("%s%d", c.String("name-prefix"), i)
		if c.Bool("exact-name") {
			name = c.String("name-prefix")
		}
		specs = append(specs, hollow.NodeSpec{Name: name, CPU: c.String("cpu"), Memory: c.String("memory"),
			Pods: c.Int("max-pods"), Labels: labels, Taints: taints})
	}
	k, err := hollow.Start(ctx, client, specs, hollow.Options{LeaseRenewInterval: c.Duration("lease-renew-interval"), Logger: log})
	if err != nil {
		return runtimeError(c, err)
	}
	log.Info("hollow nodes running", "count", len(specs), "first", specs[0].Name)
	<-ctx.Done()
	k.Close()
	return nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// parseTaints reads the kubelet's --register-with-taints: key=value:Effect.
func parseTaints(s string) ([]v1.Taint, error) {
	var out []v1.Taint
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		kv, effect, ok := strings.Cut(t, ":")
		if !ok {
			return nil, fmt.Errorf("%q: want key[=value]:Effect", t)
		}
		switch v1.TaintEffect(effect) {
		case v1.TaintEffectNoSchedule, v1.TaintEffectPreferNoSchedule, v1.TaintEffectNoExecute:
		default:
			return nil, fmt.Errorf("%q: effect must be NoSchedule, PreferNoSchedule or NoExecute", t)
		}
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("%q: empty key", t)
		}
		out = append(out, v1.Taint{Key: k, Value: v, Effect: v1.TaintEffect(effect)})
	}
	return out, nil
}
