package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"synod/chaos/check"
	"synod/chaos/history"
	"synod/chaos/workload"
)

// RemoteOptions configures RunRemote: a chaos run against a cluster that
// site.yml deployed, driven from the control host.
type RemoteOptions struct {
	Inventory string // the INI inventory site.yml ran with
	// TestbedState is the nspawn testbed's state dir, for the machine and
	// link kinds (default /var/lib/synod-testbed).
	TestbedState string

	Kinds    []Kind // RemoteKinds (ParseRemoteKinds)
	Interval time.Duration
	Count    int
	Duration time.Duration
	Seed     int64
	// ReportDir gets the report; default ./reports/chaos-<UTC time>.
	ReportDir string

	Clients, Keys, Watchers int
	NoKube                  bool
	Settle, HealthTimeout   time.Duration

	Progress    io.Writer
	ProgressTTY bool
	Logger      *slog.Logger
}

// remoteRunner is the state of one RunRemote; the embedded runner does
// the progress lines and the event log.
type remoteRunner struct {
	*runner
	cluster *RemoteCluster
	testbed Testbed
}

func (o *RemoteOptions) options(masters int) Options {
	return Options{Masters: masters, Kinds: o.Kinds, Interval: o.Interval, Count: o.Count, Duration: o.Duration,
		Seed: o.Seed, ReportDir: o.ReportDir, Clients: o.Clients, Keys: o.Keys, Watchers: o.Watchers, NoKube: o.NoKube,
		Settle: o.Settle, HealthTimeout: o.HealthTimeout, Progress: o.Progress, ProgressTTY: o.ProgressTTY, Logger: o.Logger}
}

// RunRemote runs the chaos workload and checks against the deployed
// cluster of o.Inventory: faults on its masters' services (SSH) and, on
// the nspawn testbed, on their machines and links. The run leaves the
// cluster healed (links up, machines running and continued, every
// synod-master started). Errors are the harness's; failed checks are in
// the Report.
func RunRemote(ctx context.Context, o RemoteOptions) (rep *Report, retErr error) {
	inv, err := ParseInventory(o.Inventory)
	if err != nil {
		return nil, usagef("%v", err)
	}
	opts := o.options(len(inv.Masters))
	switch {
	case len(inv.Masters)%2 == 0:
		return nil, usagef("the inventory has %d masters: a chaos run needs an odd number", len(inv.Masters))
	case len(o.Kinds) == 0:
		return nil, usagef("no fault kinds (--faults)")
	case o.Interval < time.Second:
		return nil, usagef("--interval must be at least 1s, not %s", o.Interval)
	case o.Count < 0:
		return nil, usagef("--count must not be negative")
	case o.Count == 0 && o.Duration < o.Interval:
		return nil, usagef("--duration (%s) must be at least --interval (%s), or give --count", o.Duration, o.Interval)
	}
	if o.TestbedState == "" {
		o.TestbedState = "/var/lib/synod-testbed"
	}
	// A stopped machine boots again before its master starts.
	opts.setDefaults(90 * time.Second)
	tb := Testbed{State: o.TestbedState}
	for _, k := range o.Kinds {
		if k == KindMachineStop || k == KindMachinePause || k == KindLinkCut {
			if os.Geteuid() != 0 {
				return nil, errors.New("chaos: fault " + string(k) + " needs root on the testbed host")
			}
			for _, m := range inv.Masters {
				if err := tb.Check(m.Name); err != nil {
					return nil, fmt.Errorf("%w (fault %s acts on the nspawn testbed's machines)", err, k)
				}
			}
		}
	}
	reportDir, err := filepath.Abs(opts.ReportDir)
	if err != nil {
		return nil, fmt.Errorf("chaos: report dir: %w", err)
	}
	opts.ReportDir = reportDir
	if err := os.MkdirAll(reportDir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: report dir: %w", err)
	}
	hlog, err := os.OpenFile(filepath.Join(reportDir, "harness.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	defer hlog.Close()
	fileHandler := slog.NewTextHandler(hlog, nil)
	log := slog.New(teeHandler{opts.Logger.Handler(), fileHandler})

	names := make([]string, len(inv.Masters))
	for i, m := range inv.Masters {
		names[i] = m.Name
	}
	r := &remoteRunner{runner: &runner{opts: opts, log: log, flog: slog.New(fileHandler), start: time.Now()}, testbed: tb}
	r.steps = RemoteSchedule(opts.ScheduleConfig())
	rep = &Report{Dir: reportDir, Options: opts, Schedule: r.steps}
	sched := FormatRemoteSchedule(r.steps, names)
	fmt.Fprintf(opts.Progress, "schedule (seed %d, %d masters of %s, %d faults, interval %s):\n%s", o.Seed, len(names), o.Inventory, len(r.steps), o.Interval, sched)
	if err := os.WriteFile(filepath.Join(reportDir, "schedule.txt"), []byte(sched), 0o644); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}

	cl, err := NewRemoteCluster(inv, log)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	r.cluster = cl
	r.logf("waiting for the cluster of %s to be healthy", o.Inventory)
	if err := cl.WaitHealthy(ctx, opts.HealthTimeout); err != nil {
		return nil, err
	}
	wcfg := workload.Config{EtcdEndpoints: cl.EtcdEndpoints(), EtcdTLS: cl.TLS(), Clients: o.Clients, Keys: o.Keys, Watchers: o.Watchers,
		Seed: o.Seed, Logger: log.With("part", "workload")}
	if !o.NoKube {
		wcfg.Kubeconfig, wcfg.KubeServers = cl.KubeconfigPath(), cl.KubeServers()
	}
	logsSince := time.Now()
	wl, err := workload.Start(ctx, wcfg)
	if err != nil {
		return nil, fmt.Errorf("chaos: workload: %w", err)
	}
	r.logf("cluster healthy; workload running")
	var h *history.History
	stopWorkload := func() {
		if h == nil {
			h = wl.Stop()
		}
	}
	defer stopWorkload()
	pctx, stopProgress := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(pctx, wl)
	}()
	defer func() {
		stopProgress()
		<-progressDone
	}()

	sleepCtx(ctx, min(2*time.Second, o.Interval))
	phase := time.Now()
	var faultErr error
	for _, s := range r.steps {
		if !sleepCtx(ctx, time.Until(phase.Add(s.At))) {
			break
		}
		inj, err := r.injectRemote(ctx, s)
		if inj.fault.Kind != "" {
			rep.Faults = append(rep.Faults, inj.fault)
			rep.FaultLeaders = append(rep.FaultLeaders, inj.leader)
		}
		if err != nil {
			faultErr = fmt.Errorf("chaos: fault %d (%s): %w", s.N, s.Kind, err)
			break
		}
		if err := cl.WaitHealthy(ctx, opts.HealthTimeout); err != nil {
			rep.Unhealthy = append(rep.Unhealthy, fmt.Sprintf("after fault %d (%s %s): %v", s.N, s.Kind, inj.fault.Target, err))
			r.logf("cluster not healthy after fault %d: %v", s.N, err)
		}
		r.mu.Lock()
		r.done++
		r.mu.Unlock()
	}
	r.logf("healing everything")
	if err := r.healAll(context.WithoutCancel(ctx)); err != nil {
		faultErr = errors.Join(faultErr, fmt.Errorf("chaos: final heal: %w", err))
	}
	if ctx.Err() != nil {
		stopWorkload()
		rep.History = h
		rep.write()
		return rep, errors.Join(faultErr, fmt.Errorf("chaos: interrupted: %w", ctx.Err()))
	}
	if err := cl.WaitHealthy(ctx, opts.HealthTimeout); err != nil {
		rep.Unhealthy = append(rep.Unhealthy, fmt.Sprintf("after the final heal: %v", err))
	}
	sleepCtx(ctx, opts.Settle)
	stats := wl.Stats()
	stopWorkload()
	rep.Stats, rep.History, rep.OpsChecked = stats, h, len(h.Ops)

	logs, err := cl.FetchLogs(ctx, reportDir, logsSince)
	if err != nil {
		r.logf("fetching the masters' journals: %v", err)
	}
	r.logf("checking %d operations, %d watch events, %d Kubernetes operations", len(h.Ops), len(h.Watches), len(h.Kube))
	in := check.Input{History: h, Faults: rep.Faults, ReportDir: reportDir, SchedulerLease: true, ControllerLease: true,
		RecoveryFrom: wl.FirstWriteOKAfter, EtcdTLS: cl.TLS()}
	for i := range cl.Size() {
		in.Masters = append(in.Masters, check.MasterState{Name: cl.Name(i), Endpoint: cl.EtcdEndpoints()[i], LogPath: logs[i]})
	}
	rep.Results = check.Run(ctx, in)
	rep.Results = append(rep.Results, harnessResults(rep, nil)...)
	rep.Recovery = recoveryStats(rep.Faults, rep.FaultLeaders, wl.FirstWriteOKAfter)
	if err := rep.write(); err != nil {
		faultErr = errors.Join(faultErr, err)
	}
	return rep, faultErr
}

// healAll undoes whatever a failed step may have left: links up, machines
// continued, every master's service started. A machine stopped by a step
// whose heal failed is not booted again here (its command line is gone
// with the step); the error of that step says so.
func (r *remoteRunner) healAll(ctx context.Context) error {
	var errs []error
	for i := range r.cluster.Size() {
		name := r.cluster.Name(i)
		if contains(r.opts.Kinds, KindLinkCut) {
			errs = append(errs, r.testbed.SetLink(ctx, name, true))
		}
		if contains(r.opts.Kinds, KindMachinePause) {
			errs = append(errs, r.testbed.signalMachine(name, syscall.SIGCONT))
		}
		_, err := r.cluster.SSH(ctx, i, 30*time.Second, "systemctl start synod-master")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
