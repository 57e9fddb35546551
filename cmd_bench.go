package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"synod/internal/bench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:   "bench",
		Usage:  "benchmark synod (against etcd)",
		Action: requireSubcommand,
		Subcommands: []*cli.Command{{
			Name:  "kv",
			Usage: "measure put and get throughput and latency of synod and etcd clusters",
			UsageText: "synod bench kv [--clients 1,16,64] [--keys N] [--value-size BYTES] [--duration D | --ops N]\n" +
				"               [--targets synod,etcd] [--masters N] [--dir DIR] [--json FILE] [--markdown FILE]\n" +
				"               [--endpoints URLS]\n\n" +
				"Starts a cluster of each target in turn on loopback (etcd from --etcd-binary, if installed),\n" +
				"runs a put, a linearizable get and a serializable get phase at each concurrency level, and\n" +
				"prints ops/s, p50 and p99 per phase and the synod/etcd ratios as a Markdown table.\n" +
				"With --endpoints it benchmarks an already-running cluster instead. With CI=true a missing\n" +
				"etcd is an error.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "clients", Value: "1,16,64", Usage: "comma-separated concurrency levels; each client has its own connection"},
				&cli.IntFlag{Name: "keys", Value: 10000, Usage: "number of distinct keys"},
				&cli.IntFlag{Name: "value-size", Value: 256, Usage: "bytes per value"},
				&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "length of each phase"},
				&cli.IntFlag{Name: "ops", Usage: "requests per phase, instead of --duration"},
				&cli.StringFlag{Name: "targets", Value: "synod,etcd", Usage: "comma-separated targets to launch, in order: synod, etcd"},
				&cli.IntFlag{Name: "masters", Value: 3, Usage: "members per launched cluster"},
				&cli.StringFlag{Name: "dir", Usage: "parent of the temporary data dir, removed at the end (default: $TMPDIR or /tmp)"},
				&cli.StringFlag{Name: "json", Usage: "also write the results as JSON to `FILE`"},
				&cli.StringFlag{Name: "markdown", Usage: "also write the Markdown table to `FILE`"},
				&cli.StringFlag{Name: "endpoints", Usage: "comma-separated client URLs of a running cluster to benchmark instead of launching one; --targets then only labels it"},
				&cli.StringFlag{Name: "etcd-binary", Value: bench.DefaultEtcdBinary, Usage: "etcd binary for the etcd target"},
			},
			Action: runBenchKV,
		}, {
			Name:  "api",
			Usage: "measure pod-create throughput, latency and watch delay of the Kubernetes API",
			UsageText: "synod bench api [--clients 1,16,64] [--duration D | --ops N] [--masters N] [--dir DIR]\n" +
				"                [--json FILE] [--markdown FILE]\n\n" +
				"Starts a synod cluster with the Kubernetes API on loopback. At each concurrency level, that many\n" +
				"client-go clients (one connection each, no client rate limit, round-robin over the masters)\n" +
				"create pods in namespace \"bench\" while one watcher, on the master with the fewest writers,\n" +
				"times each create's start to its ADDED event. Prints creates/s, p50 and p99 of the creates and\n" +
				"of the watch delay as a Markdown table, and whether the goal (>= 1,500 creates/s and p99 < 50 ms\n" +
				"at 16 clients) was met.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "clients", Value: "1,16,64", Usage: "comma-separated concurrency levels; each client has its own connection"},
				&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "length of each level"},
				&cli.IntFlag{Name: "ops", Usage: "creates per level, instead of --duration"},
				&cli.IntFlag{Name: "masters", Value: 3, Usage: "masters in the launched cluster"},
				&cli.StringFlag{Name: "dir", Usage: "parent of the temporary data dir, removed at the end (default: $TMPDIR or /tmp)"},
				&cli.StringFlag{Name: "json", Usage: "also write the results as JSON to `FILE`"},
				&cli.StringFlag{Name: "markdown", Usage: "also write the Markdown table to `FILE`"},
			},
			Action: runBenchAPI,
		}, {
			Name:  "scheduler",
			Usage: "measure how fast the scheduler binds pending pods",
			UsageText: "synod bench scheduler [--nodes N] [--pods N] [--masters N] [--clients N] [--bind-concurrency N]\n" +
				"                      [--timeout D] [--dir DIR] [--json FILE] [--markdown FILE]\n\n" +
				"Starts a synod cluster with the Kubernetes API but without scheduler and controllers, creates\n" +
				"the nodes (Ready, 4 cpu, 32Gi, 110 pods) and the pending pods (100m cpu, 500Mi) through the API,\n" +
				"then runs synod's scheduler in-process against it until every pod is bound, as timed by a\n" +
				"watcher on its own connection. Prints pods scheduled per second, time to the first binding,\n" +
				"and whether the goal (>= 1,000 pods/s) was met.",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "nodes", Value: 1000, Usage: "nodes to create"},
				&cli.IntFlag{Name: "pods", Value: 10000, Usage: "pending pods to create and schedule"},
				&cli.IntFlag{Name: "masters", Value: 1, Usage: "masters in the launched cluster"},
				&cli.IntFlag{Name: "clients", Value: 32, Usage: "concurrent clients creating the nodes and pods"},
				&cli.IntFlag{Name: "bind-concurrency", Value: 0, Usage: "the scheduler's bindings in flight (0: its default)"},
				&cli.BoolFlag{Name: "events", Value: true, Usage: "write the scheduler's Scheduled events to the API, as a master does (--events=false to see their cost)"},
				&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "bound on the scheduling phase"},
				&cli.StringFlag{Name: "dir", Usage: "parent of the temporary data dir, removed at the end (default: $TMPDIR or /tmp)"},
				&cli.StringFlag{Name: "json", Usage: "also write the results as JSON to `FILE`"},
				&cli.StringFlag{Name: "markdown", Usage: "also write the Markdown table to `FILE`"},
			},
			Action: runBenchScheduler,
		}, {
			Name:  "pods",
			Usage: "measure pod startup latency on real workers (needs root)",
			UsageText: "synod bench pods [--pods N] [--clients N] [--masters N] [--workers N] [--timeout D]\n" +
				"                 [--rate PER_SEC] [--dir DIR] [--json FILE] [--markdown FILE]\n\n" +
				"Starts a synod cluster with workers (each in its own network namespace, with containerd and\n" +
				"the local test image), waits until their Nodes are Ready, then creates the pods (busybox\n" +
				"sleep 3600, nodeName unset) while a watch times each create to the first event that shows\n" +
				"the pod Running and Ready. Prints p50/p90/p99/max startup, time to the first running pod,\n" +
				"pods/s, and whether the goal (p99 < 1 s) was met. Deletes the pods at the end. --rate spaces\n" +
				"the creates (Kubernetes' density tests create at a steady rate) instead of one burst.",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "pods", Value: 100, Usage: "pods to create"},
				&cli.IntFlag{Name: "clients", Value: 10, Usage: "concurrent clients creating the pods"},
				&cli.Float64Flag{Name: "rate", Usage: "space the creates to this many per second (0: one burst)"},
				&cli.IntFlag{Name: "masters", Value: 1, Usage: "masters in the launched cluster"},
				&cli.IntFlag{Name: "workers", Value: 1, Usage: "workers in the launched cluster"},
				&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "bound on the wait for every pod to run"},
				&cli.StringFlag{Name: "dir", Usage: "parent of the temporary data dir, removed at the end (default: $TMPDIR or /tmp)"},
				&cli.StringFlag{Name: "json", Usage: "also write the results as JSON to `FILE`"},
				&cli.StringFlag{Name: "markdown", Usage: "also write the Markdown table to `FILE`"},
			},
			Action: runBenchPods,
		}},
	}
}

func runBenchPods(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().Slice())
	}
	o := bench.PodsOptions{
		Pods:          c.Int("pods"),
		Clients:       c.Int("clients"),
		Rate:          c.Float64("rate"),
		Masters:       c.Int("masters"),
		Workers:       c.Int("workers"),
		Timeout:       c.Duration("timeout"),
		LaunchOptions: bench.LaunchOptions{Dir: c.String("dir"), Logger: logger(c), Progress: c.App.ErrWriter},
	}
	if o.Pods < 1 || o.Clients < 1 || o.Masters < 1 || o.Workers < 1 || o.Rate < 0 || o.Timeout <= 0 {
		return usageError(c, "--pods, --clients, --masters and --workers must be ≥ 1, --rate ≥ 0 and --timeout > 0")
	}
	var err error
	if o.SynodBinary, err = os.Executable(); err != nil {
		return runtimeError(c, fmt.Errorf("find the synod binary: %w", err))
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := bench.RunPods(ctx, o)
	if rep != nil && rep.Running > 0 {
		runErr = benchPrint(c, rep.Markdown(), rep, runErr)
	}
	return benchExit(c, ctx, runErr)
}

func runBenchScheduler(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().Slice())
	}
	o := bench.SchedulerOptions{
		Nodes:           c.Int("nodes"),
		Pods:            c.Int("pods"),
		Masters:         c.Int("masters"),
		Clients:         c.Int("clients"),
		BindConcurrency: c.Int("bind-concurrency"),
		NoEvents:        !c.Bool("events"),
		Timeout:         c.Duration("timeout"),
		LaunchOptions:   bench.LaunchOptions{Dir: c.String("dir"), Logger: logger(c), Progress: c.App.ErrWriter},
	}
	if o.Nodes < 1 || o.Pods < 1 || o.Masters < 1 || o.Clients < 1 || o.BindConcurrency < 0 || o.Timeout <= 0 {
		return usageError(c, "--nodes, --pods, --masters and --clients must be ≥ 1, --bind-concurrency ≥ 0 and --timeout > 0")
	}
	var err error
	if o.SynodBinary, err = os.Executable(); err != nil {
		return runtimeError(c, fmt.Errorf("find the synod binary: %w", err))
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := bench.RunScheduler(ctx, o)
	if rep != nil && rep.Bound > 0 {
		runErr = benchPrint(c, rep.Markdown(), rep, runErr)
	}
	return benchExit(c, ctx, runErr)
}

func runBenchAPI(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().Slice())
	}
	clients, duration, ops, err := benchLoad(c)
	if err != nil {
		return err
	}
	o := bench.APIOptions{
		Clients:       clients,
		Duration:      duration,
		Ops:           ops,
		Masters:       c.Int("masters"),
		LaunchOptions: bench.LaunchOptions{Dir: c.String("dir"), Logger: logger(c), Progress: c.App.ErrWriter},
	}
	if o.Masters < 1 {
		return usageError(c, "--masters must be ≥ 1")
	}
	if o.SynodBinary, err = os.Executable(); err != nil {
		return runtimeError(c, fmt.Errorf("find the synod binary: %w", err))
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := bench.RunAPI(ctx, o)
	if rep != nil && len(rep.Results) > 0 {
		runErr = benchPrint(c, rep.Markdown(), rep, runErr)
	}
	return benchExit(c, ctx, runErr)
}

func runBenchKV(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().Slice())
	}
	clients, duration, ops, err := benchLoad(c)
	if err != nil {
		return err
	}
	o := bench.Options{
		Clients:     clients,
		Keys:        c.Int("keys"),
		ValueSize:   c.Int("value-size"),
		Duration:    duration,
		Ops:         ops,
		Masters:     c.Int("masters"),
		Dir:         c.String("dir"),
		EtcdBinary:  c.String("etcd-binary"),
		RequireEtcd: os.Getenv("CI") == "true",
		Endpoints:   benchSplitList(c.String("endpoints")),
		Logger:      logger(c),
		Progress:    c.App.ErrWriter,
	}
	if o.Keys < 1 || o.ValueSize < 0 || o.Masters < 1 {
		return usageError(c, "--keys and --masters must be ≥ 1 and --value-size ≥ 0")
	}
	if len(o.Endpoints) == 0 || c.IsSet("targets") {
		o.Targets = benchSplitList(c.String("targets"))
	}
	if len(o.Endpoints) == 0 {
		for _, t := range o.Targets {
			if t != bench.TargetSynod && t != bench.TargetEtcd {
				return usageError(c, "bad --targets: unknown target %q (want synod, etcd)", t)
			}
		}
		if len(o.Targets) == 0 {
			return usageError(c, "--targets is empty")
		}
		if o.SynodBinary, err = os.Executable(); err != nil {
			return runtimeError(c, fmt.Errorf("find the synod binary: %w", err))
		}
	} else if len(o.Targets) > 1 {
		return usageError(c, "with --endpoints, --targets takes one name (a label for the results)")
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := bench.Run(ctx, o)
	if rep != nil && len(rep.Results) > 0 {
		runErr = benchPrint(c, rep.Markdown(), rep, runErr)
	}
	return benchExit(c, ctx, runErr)
}

// benchLoad reads the flags both benchmarks share: --clients, and either
// --duration or --ops.
func benchLoad(c *cli.Context) (clients []int, duration time.Duration, ops int, err error) {
	if clients, err = benchParseInts(c.String("clients")); err != nil {
		return nil, 0, 0, usageError(c, "bad --clients: %v", err)
	}
	if c.IsSet("duration") && c.IsSet("ops") {
		return nil, 0, 0, usageError(c, "give --duration or --ops, not both")
	}
	duration, ops = c.Duration("duration"), c.Int("ops")
	switch {
	case ops > 0:
		duration = 0
	case c.IsSet("ops"):
		return nil, 0, 0, usageError(c, "--ops must be > 0")
	case duration <= 0:
		return nil, 0, 0, usageError(c, "--duration must be > 0")
	}
	return clients, duration, ops, nil
}

// benchPrint prints a report's table and writes --markdown and --json; it
// returns runErr, or the first write error if the run itself succeeded.
func benchPrint(c *cli.Context, md string, rep interface{ JSON() ([]byte, error) }, runErr error) error {
	if runErr != nil {
		md += "\n(incomplete: the run stopped early)\n"
	}
	fmt.Fprint(c.App.Writer, "\n"+md)
	if path := c.String("markdown"); path != "" {
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil && runErr == nil {
			runErr = err
		}
	}
	if path := c.String("json"); path != "" {
		b, err := rep.JSON()
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		if err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// benchExit turns a benchmark's outcome into the command's result.
func benchExit(c *cli.Context, ctx context.Context, runErr error) error {
	if runErr == nil {
		return nil
	}
	if errors.Is(runErr, ctx.Err()) && ctx.Err() != nil {
		return cli.Exit(fmt.Sprintf("%s: interrupted; every started process was stopped", c.Command.HelpName), 1)
	}
	return runtimeError(c, runErr)
}

// benchParseInts parses "1,16,64".
func benchParseInts(s string) ([]int, error) {
	var out []int
	for _, f := range benchSplitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// benchSplitList splits a comma-separated list, dropping blanks.
func benchSplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
