package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"synod/chaos"
)

// runChaosRemote is `synod chaos run --inventory FILE`: the chaos run
// against a cluster Ansible deployed.
func runChaosRemote(c *cli.Context) error {
	for _, f := range []string{"masters", "workers", "binary", "master-arg", "keep", "wait-lock"} {
		if c.IsSet(f) {
			return usageError(c, "--%s does not apply with --inventory (the inventory is the cluster)", f)
		}
	}
	// The local default (kill,pause,partition) names local kinds.
	faults := "kill,leader-kill"
	if c.IsSet("faults") {
		faults = c.String("faults")
	}
	kinds, err := chaos.ParseRemoteKinds(faults)
	if err != nil {
		return usageError(c, "--faults: %v", err)
	}
	if c.IsSet("count") && c.IsSet("duration") {
		return usageError(c, "give --count or --duration, not both")
	}
	o := chaos.RemoteOptions{
		Inventory: c.String("inventory"), TestbedState: c.String("testbed-state"),
		Kinds: kinds, Interval: c.Duration("interval"), Count: c.Int("count"), Duration: c.Duration("duration"),
		Seed: c.Int64("seed"), ReportDir: c.String("report-dir"),
		Clients: c.Int("clients"), Keys: c.Int("keys"), Watchers: c.Int("watchers"), NoKube: c.Bool("no-kube"),
		Settle: c.Duration("settle"), Progress: c.App.ErrWriter, Logger: logger(c),
	}
	if c.IsSet("count") {
		o.Duration = 0
	}
	if c.Bool("print-schedule") {
		inv, err := chaos.ParseInventory(o.Inventory)
		if err != nil {
			return usageError(c, "%v", err)
		}
		var names []string
		for _, m := range inv.Masters {
			names = append(names, m.Name)
		}
		sc := chaos.ScheduleConfig{Seed: o.Seed, Masters: len(names), Kinds: kinds, Interval: o.Interval, Count: o.Count, Duration: o.Duration}
		fmt.Fprint(c.App.Writer, chaos.FormatRemoteSchedule(chaos.RemoteSchedule(sc), names))
		return nil
	}
	if f, ok := c.App.ErrWriter.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			o.ProgressTTY = true
		}
	}
	if !c.IsSet("log-level") {
		o.Logger = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := chaos.RunRemote(ctx, o)
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
