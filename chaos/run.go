package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"synod/chaos/check"
	"synod/chaos/history"
	"synod/chaos/workload"
)

// Options configures Run.
type Options struct {
	Binary    string // synod binary the masters run
	Masters   int    // 3, 5 or 7
	Kinds     []Kind // fault kinds (ParseKinds)
	Interval  time.Duration
	Count     int           // faults; 0 = Duration / Interval
	Duration  time.Duration // length of the fault phase when Count is 0
	Seed      int64
	ReportDir string
	// Keep keeps the masters' data dirs (under ReportDir/data).
	Keep bool
	// MasterArgs are appended to every `synod master` command line
	// (tests use it for the hidden --unsafe-chaos-bug).
	MasterArgs []string

	// Workload sizes; zero takes the workload's defaults.
	Clients, Keys, Watchers int
	// NoKube runs no Kubernetes-API clients.
	NoKube bool
	// Workers starts this many workers running steady pods, which must
	// keep their containers through every master fault.
	Workers int

	// Settle is how long the workload keeps running after the final heal
	// (default 5s), HealthTimeout how long a fault may take to heal
	// before the run counts the cluster as not recovered (default 60s).
	Settle, HealthTimeout time.Duration
	// LockWait bounds the wait for another chaos run to finish (default:
	// no wait).
	LockWait time.Duration

	// Progress receives the schedule, one line per fault and the progress
	// line; ProgressTTY makes the progress line rewrite itself.
	Progress    io.Writer
	ProgressTTY bool
	// Logger logs the harness's own events (also written to
	// ReportDir/harness.log).
	Logger *slog.Logger
}

// UsageError is a bad option: the CLI exits 2 on it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// Validate checks the options and fills in defaults.
func (o *Options) Validate() error {
	switch {
	case o.Masters != 3 && o.Masters != 5 && o.Masters != 7:
		return usagef("--masters must be 3, 5 or 7 (an odd count that tolerates a fault), not %d", o.Masters)
	case len(o.Kinds) == 0:
		return usagef("no fault kinds (--faults)")
	case o.Interval < time.Second:
		return usagef("--interval must be at least 1s, not %s", o.Interval)
	case o.Count < 0:
		return usagef("--count must not be negative")
	case o.Workers < 0 || o.Workers > 9:
		return usagef("--workers must be 0 to 9, not %d", o.Workers)
	case o.Count == 0 && o.Duration < o.Interval:
		return usagef("--duration (%s) must be at least --interval (%s), or give --count", o.Duration, o.Interval)
	case o.Binary == "":
		return usagef("no synod binary")
	}
	if _, err := os.Stat(o.Binary); err != nil {
		return usagef("synod binary: %v", err)
	}
	o.setDefaults(60 * time.Second)
	return nil
}

// setDefaults fills the report dir, settle time, health timeout, progress
// writer and logger that were left zero; local and remote runs share it.
func (o *Options) setDefaults(healthTimeout time.Duration) {
	if o.ReportDir == "" {
		o.ReportDir = filepath.Join("reports", "chaos-"+time.Now().UTC().Format("20060102-150405"))
	}
	if o.Settle == 0 {
		o.Settle = 5 * time.Second
	}
	if o.HealthTimeout == 0 {
		o.HealthTimeout = healthTimeout
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// ScheduleConfig is the schedule the options ask for.
func (o *Options) ScheduleConfig() ScheduleConfig {
	return ScheduleConfig{Seed: o.Seed, Masters: o.Masters, Kinds: o.Kinds, Interval: o.Interval, Count: o.Count, Duration: o.Duration}
}

// runner is the state of one Run.
type runner struct {
	opts    Options
	log     *slog.Logger // Options.Logger and harness.log
	flog    *slog.Logger // harness.log only (events also shown on Progress)
	cluster *Cluster
	steps   []Step
	start   time.Time

	mu        sync.Mutex
	done      int // steps finished
	lineShown bool
}

// logf prints an event line to Progress (clearing the progress line) and
// to the harness log.
func (r *runner) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.flog.Info(msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lineShown && r.opts.ProgressTTY {
		fmt.Fprint(r.opts.Progress, "\r\033[K")
		r.lineShown = false
	}
	fmt.Fprintf(r.opts.Progress, "[%6s] %s\n", time.Since(r.start).Round(time.Second), msg)
}

// Run runs one chaos run: cluster, workload, faults, final heal, checks,
// report. The error is for the harness failing (the cluster would not
// start, a fault could not be applied, ...); checks that fail are in the
// Report, not the error. Everything the run made on the machine is gone
// when it returns.
func Run(ctx context.Context, o Options) (rep *Report, retErr error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("chaos: needs root (network namespaces, iptables)")
	}
	reportDir, err := filepath.Abs(o.ReportDir)
	if err != nil {
		return nil, fmt.Errorf("chaos: report dir: %w", err)
	}
	o.ReportDir = reportDir
	dataDir := filepath.Join(reportDir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: report dir: %w", err)
	}
	hlog, err := os.OpenFile(filepath.Join(reportDir, "harness.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	defer hlog.Close()
	fileHandler := slog.NewTextHandler(hlog, nil)
	log := slog.New(teeHandler{o.Logger.Handler(), fileHandler})

	r := &runner{opts: o, log: log, flog: slog.New(fileHandler), start: time.Now()}
	r.steps = Schedule(o.ScheduleConfig())
	rep = &Report{Dir: reportDir, Options: o, Schedule: r.steps}
	fmt.Fprintf(o.Progress, "schedule (seed %d, %d masters, %d faults, interval %s):\n%s", o.Seed, o.Masters, len(r.steps), o.Interval, FormatSchedule(r.steps))
	if err := os.WriteFile(filepath.Join(reportDir, "schedule.txt"), []byte(FormatSchedule(r.steps)), 0o644); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}

	lctx, cancel := context.WithTimeout(ctx, o.LockWait)
	lock, err := lockMachine(lctx, func() { r.logf("waiting for another chaos run (%s)", LockFile) })
	cancel()
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if left := Leftovers(); len(left) > 0 {
		r.logf("removing leftovers of an earlier run: %v", left)
		if err := cleanupMachine(); err != nil {
			return nil, fmt.Errorf("chaos: leftovers of an earlier run: %w", err)
		}
	}
	defer func() {
		if !o.Keep {
			if err := os.RemoveAll(dataDir); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("chaos: remove data: %w", err))
			}
		}
	}()

	r.logf("starting %d masters (binary %s, report %s)", o.Masters, o.Binary, reportDir)
	cl, err := StartCluster(ctx, ClusterConfig{Binary: o.Binary, Masters: o.Masters, Dir: dataDir, LogDir: reportDir, MasterArgs: o.MasterArgs, Workers: o.Workers, Logger: log})
	if err != nil {
		return nil, err
	}
	r.cluster = cl
	defer func() {
		if err := cl.Close(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("chaos: cleanup: %w", err))
		}
	}()
	var steady []podRecord
	if o.Workers > 0 {
		r.logf("%d workers up; starting %d steady pods", o.Workers, 2*o.Workers)
		if steady, err = cl.startSteadyPods(ctx, int32(2*o.Workers)); err != nil {
			return nil, err
		}
	}
	r.logf("cluster healthy; starting the workload")

	wcfg := workload.Config{EtcdEndpoints: cl.EtcdEndpoints(), Clients: o.Clients, Keys: o.Keys, Watchers: o.Watchers,
		Seed: o.Seed, Logger: log.With("part", "workload")}
	if !o.NoKube {
		wcfg.Kubeconfig, wcfg.KubeServers = cl.KubeconfigPath(), cl.KubeServers()
	}
	wl, err := workload.Start(ctx, wcfg)
	if err != nil {
		return nil, fmt.Errorf("chaos: workload: %w", err)
	}
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

	// Let the workload warm up so that the first fault hits traffic.
	sleepCtx(ctx, min(2*time.Second, o.Interval))
	phase := time.Now()
	var faultErr error
	var quorumLoss []window
	for _, s := range r.steps {
		if !sleepCtx(ctx, time.Until(phase.Add(s.At))) {
			break
		}
		inj, err := r.inject(ctx, s)
		if inj.fault.Kind != "" {
			rep.Faults = append(rep.Faults, inj.fault)
			rep.FaultLeaders = append(rep.FaultLeaders, inj.leader)
		}
		if inj.noQuorum != nil {
			quorumLoss = append(quorumLoss, *inj.noQuorum)
		}
		if err != nil {
			faultErr = fmt.Errorf("chaos: fault %d (%s): %w", s.N, s.Kind, err)
			break
		}
		if err := cl.WaitHealthy(ctx, o.HealthTimeout); err != nil {
			rep.Unhealthy = append(rep.Unhealthy, fmt.Sprintf("after fault %d (%s %s): %v", s.N, s.Kind, inj.fault.Target, err))
			r.logf("cluster not healthy after fault %d: %v", s.N, err)
		}
		r.mu.Lock()
		r.done++
		r.mu.Unlock()
	}
	if ctx.Err() != nil {
		stopProgress()
		<-progressDone
		stopWorkload()
		rep.History = h
		rep.write() // what there is, for a look at how far it got
		return rep, fmt.Errorf("chaos: interrupted: %w", ctx.Err())
	}

	// Final heal: whatever a failed step left, undone; then a quiet time
	// for the workload and the members to converge.
	r.logf("healing everything")
	if err := cl.HealAll(ctx); err != nil {
		faultErr = errors.Join(faultErr, fmt.Errorf("chaos: final heal: %w", err))
	}
	if err := cl.WaitHealthy(ctx, o.HealthTimeout); err != nil {
		rep.Unhealthy = append(rep.Unhealthy, fmt.Sprintf("after the final heal: %v", err))
	}
	sleepCtx(ctx, o.Settle)
	stats := wl.Stats()
	stopWorkload()
	stopProgress()
	<-progressDone
	rep.Stats = stats
	rep.History = h
	rep.OpsChecked = len(h.Ops)
	if ctx.Err() != nil {
		rep.write()
		return rep, fmt.Errorf("chaos: interrupted: %w", ctx.Err())
	}

	r.logf("checking %d operations, %d watch events, %d Kubernetes operations", len(h.Ops), len(h.Watches), len(h.Kube))
	in := check.Input{History: h, Faults: rep.Faults, ReportDir: reportDir, SchedulerLease: true, ControllerLease: true,
		RecoveryFrom: wl.FirstWriteOKAfter}
	for i := range cl.Size() {
		in.Masters = append(in.Masters, check.MasterState{Name: cl.Name(i), Endpoint: cl.EtcdEndpoints()[i], LogPath: cl.LogPath(i)})
	}
	rep.Results = check.Run(ctx, in)
	rep.Results = append(rep.Results, harnessResults(rep, quorumLoss)...)
	if o.Workers > 0 {
		rep.Results = append(rep.Results, cl.checkSteadyPods(ctx, steady))
	}
	rep.Recovery = recoveryStats(rep.Faults, rep.FaultLeaders, wl.FirstWriteOKAfter)
	if err := rep.write(); err != nil {
		faultErr = errors.Join(faultErr, err)
	}
	return rep, faultErr
}

// harnessResults are the verdicts the harness itself reaches: the cluster
// healed after every fault, and no write was acknowledged while a majority
// was dead.
func harnessResults(rep *Report, quorumLoss []window) []check.Result {
	healthy := check.Result{Name: "healthy-after-faults", Pass: len(rep.Unhealthy) == 0}
	if healthy.Pass {
		healthy.Evidence = fmt.Sprintf("every member answered a linearizable read within %s of each of %d heals", rep.Options.HealthTimeout, len(rep.Faults))
	} else {
		healthy.Evidence = fmt.Sprintf("%d time(s) not healthy within %s: %s", len(rep.Unhealthy), rep.Options.HealthTimeout, rep.Unhealthy[0])
		healthy.Details = rep.Unhealthy
	}
	out := []check.Result{healthy}
	if len(quorumLoss) == 0 {
		return out
	}
	nq := check.Result{Name: "no-writes-without-quorum", Pass: true}
	var bad []history.Op
	tried := 0
	for _, w := range quorumLoss {
		for _, op := range rep.History.Ops {
			if !op.IsWrite() || op.Call < w.from.UnixNano() || op.Call > w.to.UnixNano() {
				continue
			}
			tried++
			if op.OK && op.Return <= w.to.UnixNano() {
				bad = append(bad, op)
			}
		}
	}
	if len(bad) == 0 {
		nq.Evidence = fmt.Sprintf("none of %d writes invoked while a majority was dead (%d times) was acknowledged before it came back", tried, len(quorumLoss))
	} else {
		nq.Pass = false
		nq.Evidence = fmt.Sprintf("%d write(s) acknowledged while a majority was dead, e.g. client %d %s %q at %s",
			len(bad), bad[0].Client, bad[0].Kind, bad[0].Key, time.Unix(0, bad[0].Return).UTC().Format(time.RFC3339Nano))
		nq.Details = bad
	}
	return append(out, nq)
}

// progress writes the progress line every second (every 10s, as a plain
// line, when Progress is not a terminal) until ctx ends.
func (r *runner) progress(ctx context.Context, wl *workload.Workload) {
	every := time.Second
	if !r.opts.ProgressTTY {
		every = 10 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			if r.lineShown && r.opts.ProgressTTY {
				fmt.Fprint(r.opts.Progress, "\r\033[K")
				r.lineShown = false
			}
			r.mu.Unlock()
			return
		case <-tick.C:
		}
		st := wl.Stats()
		last := "never"
		if !st.LastWriteOK.IsZero() {
			last = time.Since(st.LastWriteOK).Round(100*time.Millisecond).String() + " ago"
		}
		r.mu.Lock()
		line := fmt.Sprintf("[%6s] faults %d/%d  ops %d ok %d failed %d unknown %d  kube ops %d ok %d  last write ok %s",
			time.Since(r.start).Round(time.Second), r.done, len(r.steps), st.Ops, st.OK, st.Failed, st.Unknown, st.KubeOps, st.KubeOK, last)
		if r.opts.ProgressTTY {
			fmt.Fprint(r.opts.Progress, "\r\033[K"+line)
			r.lineShown = true
		} else {
			fmt.Fprintln(r.opts.Progress, line)
		}
		r.mu.Unlock()
	}
}

// sleepCtx sleeps for d or until ctx ends; it reports whether ctx is live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// teeHandler sends records to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	if t.a.Enabled(ctx, r.Level) {
		errs = append(errs, t.a.Handle(ctx, r.Clone()))
	}
	if t.b.Enabled(ctx, r.Level) {
		errs = append(errs, t.b.Handle(ctx, r))
	}
	return errors.Join(errs...)
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}
