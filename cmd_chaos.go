package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"synod/chaos"
)

func chaosCommand() *cli.Command {
	var kinds strings.Builder
	for _, k := range chaos.Kinds {
		fmt.Fprintf(&kinds, "  %-15s %s\n", k, chaos.KindHelp[k])
	}
	var remoteKinds strings.Builder
	for _, k := range chaos.RemoteKinds {
		fmt.Fprintf(&remoteKinds, "  %-15s %s\n", k, chaos.RemoteKindHelp[k])
	}
	return &cli.Command{
		Name:   "chaos",
		Usage:  "fault-injection tests of a real cluster",
		Action: requireSubcommand,
		Subcommands: []*cli.Command{{
			Name:  "run",
			Usage: "run a cluster under faults and check that nothing acknowledged is lost",
			UsageText: "synod chaos run [--masters 3|5|7] [--faults KIND,...] [--interval D] [--duration D | --count N]\n" +
				"                [--seed N] [--report-dir DIR] [--keep]\n\n" +
				"Needs root, nsenter, ip and iptables. Starts --masters `synod master` processes (this binary, or\n" +
				"--binary), each in its own network namespace (synodch-m1, ...) on a host bridge synodch0\n" +
				"(10.97.0.0/24; masters at .11, .12, ...), with etcd clients, watchers and Kubernetes clients\n" +
				"running against them. Every --interval it injects one fault from the schedule, holds it for a\n" +
				"fifth to a half of the interval, heals it and waits for the cluster to be healthy. The schedule\n" +
				"is a function of --seed and the flags only and is printed first: the same seed replays it.\n" +
				"After a final heal it checks the recorded history (linearizability, no acknowledged write\n" +
				"lost, convergence, watches, one active scheduler and controller-manager at a time, recovery\n" +
				"times), prints a summary table and writes the report directory: schedule.txt, faults.json,\n" +
				"checks.json, recovery.json, summary.txt, history/, harness.log and each master's log.\n" +
				"Everything it created on the machine is removed at the end, also on Ctrl-C; one run at a time\n" +
				"(" + chaos.LockFile + ").\n\n" +
				"Fault kinds (--faults, comma-separated, or all):\n" + kinds.String() + "\n" +
				"With --inventory FILE it runs against the cluster ansible/site.yml deployed from FILE instead\n" +
				"(the control host's synod-<cluster>/ PKI and admin kubeconfig next to FILE; SSH as the\n" +
				"inventory says), checks the masters' journals (journalctl -u synod-master) and leaves every\n" +
				"synod-master started. --masters, --workers and --binary do not apply. The testbed kinds act on\n" +
				"the nspawn testbed (ansible/testbed/up.sh; --testbed-state) from its host, as root; take its\n" +
				"lock (flock /run/lock/synod-testbed.lock ...) as its other users do. Kinds with --inventory\n" +
				"(default kill,leader-kill):\n" +
				remoteKinds.String() + "\n" +
				"Exit codes: 0 every check passed, 1 a check failed or the harness failed, 2 bad usage.",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "masters", Value: 3, Usage: "masters: 3, 5 or 7"},
				&cli.IntFlag{Name: "workers", Usage: "also start this many workers (namespaces synodch-w1, ... at 10.97.0.31, ...) running 2 steady pods each, which must keep running through every fault"},
				&cli.StringFlag{Name: "faults", Value: "kill,pause,partition", Usage: "comma-separated fault kinds (see above), or all"},
				&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "time between the starts of two faults"},
				&cli.DurationFlag{Name: "duration", Value: time.Minute, Usage: "length of the fault phase: duration/interval faults"},
				&cli.IntFlag{Name: "count", Usage: "number of faults, instead of --duration"},
				&cli.Int64Flag{Name: "seed", Value: 1, Usage: "seed of the fault schedule and the workload"},
				&cli.StringFlag{Name: "report-dir", Usage: "where the report goes (default ./reports/chaos-<UTC time>)"},
				&cli.BoolFlag{Name: "keep", Usage: "keep the masters' data dirs (REPORT-DIR/data)"},
				&cli.StringFlag{Name: "binary", Usage: "synod binary the masters run (default: this one)"},
				&cli.IntFlag{Name: "clients", Usage: "etcd-API clients (default: the workload's)"},
				&cli.IntFlag{Name: "keys", Usage: "keys the clients contend on (default: the workload's)"},
				&cli.IntFlag{Name: "watchers", Usage: "watchers of the key prefix (default: the workload's)"},
				&cli.BoolFlag{Name: "no-kube", Usage: "run no Kubernetes-API clients"},
				&cli.DurationFlag{Name: "settle", Value: 5 * time.Second, Usage: "how long the workload runs on after the final heal"},
				&cli.DurationFlag{Name: "wait-lock", Usage: "wait this long for another chaos run to finish (default: fail at once)"},
				&cli.BoolFlag{Name: "print-schedule", Usage: "print the schedule and exit (no root needed)"},
				&cli.StringFlag{Name: "inventory", Usage: "INI Ansible inventory of a cluster site.yml deployed: run against it (see above)"},
				&cli.StringFlag{Name: "testbed-state", Value: "/var/lib/synod-testbed", Usage: "with --inventory: the nspawn testbed's state dir (machine pids) for the testbed kinds"},
				// Test-only: passes flags such as --unsafe-chaos-bug to
				// every master, to prove that the checks can fail.
				&cli.StringSliceFlag{Name: "master-arg", Hidden: true, Usage: "extra `synod master` argument (repeat)"},
			},
			Action: runChaos,
		}},
	}
}

func runChaos(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	if c.IsSet("inventory") {
		return runChaosRemote(c)
	}
	kinds, err := chaos.ParseKinds(c.String("faults"))
	if err != nil {
		return usageError(c, "--faults: %v", err)
	}
	if c.IsSet("count") && c.IsSet("duration") {
		return usageError(c, "give --count or --duration, not both")
	}
	binary := c.String("binary")
	if binary == "" {
		if binary, err = os.Executable(); err != nil {
			return runtimeError(c, fmt.Errorf("find this binary: %w", err))
		}
	}
	o := chaos.Options{
		Binary: binary, Masters: c.Int("masters"), Kinds: kinds, Interval: c.Duration("interval"),
		Count: c.Int("count"), Duration: c.Duration("duration"), Seed: c.Int64("seed"),
		ReportDir: c.String("report-dir"), Keep: c.Bool("keep"), MasterArgs: c.StringSlice("master-arg"),
		Clients: c.Int("clients"), Keys: c.Int("keys"), Watchers: c.Int("watchers"), NoKube: c.Bool("no-kube"), Workers: c.Int("workers"),
		Settle: c.Duration("settle"), LockWait: c.Duration("wait-lock"),
		Progress: c.App.ErrWriter, Logger: logger(c),
	}
	if c.IsSet("count") {
		o.Duration = 0
	}
	if f, ok := c.App.ErrWriter.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			o.ProgressTTY = true
		}
	}
	if err := o.Validate(); err != nil {
		return usageError(c, "%v", err)
	}
	if c.Bool("print-schedule") {
		fmt.Fprint(c.App.Writer, chaos.FormatSchedule(chaos.Schedule(o.ScheduleConfig())))
		return nil
	}
	// Only warnings of the harness's own log reach the terminal: its
	// events are on the progress lines, and everything is in harness.log.
	if !c.IsSet("log-level") {
		o.Logger = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := chaos.Run(ctx, o)
	if rep != nil && len(rep.Results) > 0 {
		fmt.Fprintln(c.App.Writer)
		rep.Summary(c.App.Writer)
	}
	var ue *chaos.UsageError
	switch {
	case errors.As(err, &ue):
		return usageError(c, "%v", err)
	case err != nil:
		return runtimeError(c, err)
	case !rep.Pass():
		return cli.Exit("", 1)
	}
	return nil
}
