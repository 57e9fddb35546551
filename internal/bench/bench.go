// Package bench measures the KV throughput and latency of synod against
// etcd's, the way etcd's own tools/benchmark does: a fixed set of keys,
// 256-byte values, N concurrent clients spread round-robin over the members,
// and a put phase followed by linearizable and serializable get phases.
//
// Run launches each target as a 3-member cluster of real processes on
// loopback (internal/launch), one target after the other so they never
// compete for the CPU, benchmarks it and stops it; or, with
// Options.Endpoints, benchmarks a cluster that is already running.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"synod/internal/launch"
)

// Target names.
const (
	TargetSynod = "synod"
	TargetEtcd  = "etcd"
	// TargetExternal labels results of a run against Options.Endpoints
	// when no other label is given.
	TargetExternal = "external"
)

// Phase names, in the order a concurrency level runs them.
const (
	PhasePut             = "put"
	PhaseGetLinearizable = "get-linearizable"
	PhaseGetSerializable = "get-serializable"
)

// DefaultEtcdBinary is where Debian's etcd-server installs etcd.
const DefaultEtcdBinary = "/usr/bin/etcd"

const (
	defaultReadyTimeout   = 60 * time.Second
	defaultOpTimeout      = 10 * time.Second
	defaultDialTimeout    = 5 * time.Second
	errorBackoff          = 10 * time.Millisecond
	logTailLinesOnFailure = 8
)

// Phases lists the phases in the order they run.
var Phases = []string{PhasePut, PhaseGetLinearizable, PhaseGetSerializable}

// Options configures Run. Zero values take the defaults noted per field.
type Options struct {
	Clients   []int         // concurrency levels (default 1, 16, 64)
	Keys      int           // distinct keys (default 10000)
	ValueSize int           // bytes per value (default 256)
	Duration  time.Duration // per phase, when Ops is 0 (default 5s)
	Ops       int           // per phase; when > 0 it replaces Duration

	// Targets to launch, in order: "synod" and/or "etcd" (default both).
	// With Endpoints it holds at most one name, the label of the results.
	Targets []string
	Masters int    // members per launched cluster (default 3)
	Dir     string // parent of the temporary data dir (default os.TempDir())

	SynodBinary string // the synod binary, for the synod target
	EtcdBinary  string // the etcd binary (default /usr/bin/etcd)
	// RequireEtcd makes a missing etcd binary an error (CI) instead of a
	// note and a synod-only run.
	RequireEtcd bool

	// Endpoints, when set, are benchmarked instead of launched clusters.
	Endpoints []string

	Logger   *slog.Logger // launcher logs (default: discarded)
	Progress io.Writer    // one line per step and per phase (default: none)

	ReadyTimeout time.Duration // for a launched cluster to elect a leader (default 60s)
	OpTimeout    time.Duration // per request (default 10s)
}

// Result is the outcome of one phase at one concurrency level on one target.
type Result struct {
	Target    string        `json:"target"`
	Phase     string        `json:"phase"`
	Clients   int           `json:"clients"`
	Ops       int           `json:"ops"`    // successful requests
	Errors    int           `json:"errors"` // failed requests (not in the latencies)
	Elapsed   time.Duration `json:"-"`
	OpsPerSec float64       `json:"ops_per_sec"`
	P50       time.Duration `json:"-"`
	P99       time.Duration `json:"-"`
	Max       time.Duration `json:"-"`
	FirstErr  string        `json:"first_error,omitempty"`
}

// Ratio compares synod with etcd at one phase and concurrency level.
type Ratio struct {
	Phase      string  `json:"phase"`
	Clients    int     `json:"clients"`
	Throughput float64 `json:"throughput"` // synod ops/s ÷ etcd ops/s: > 1 is synod faster
	P99        float64 `json:"p99"`        // synod p99 ÷ etcd p99: < 1 is synod faster
}

// Report is the outcome of Run.
type Report struct {
	Started     time.Time
	Masters     int // 0 with Endpoints
	Endpoints   []string
	Keys        int
	ValueSize   int
	Duration    time.Duration // per phase; 0 when Ops is set
	Ops         int
	NumCPU      int
	EtcdVersion string   // when etcd was benchmarked
	Notes       []string // e.g. that etcd was missing
	Results     []Result
}

func (o Options) withDefaults() (Options, error) {
	if len(o.Clients) == 0 {
		o.Clients = []int{1, 16, 64}
	}
	for _, c := range o.Clients {
		if c < 1 {
			return o, fmt.Errorf("bench: clients must be ≥ 1, got %d", c)
		}
	}
	if o.Keys == 0 {
		o.Keys = 10000
	}
	if o.Keys < 1 {
		return o, fmt.Errorf("bench: keys must be ≥ 1, got %d", o.Keys)
	}
	if o.ValueSize == 0 {
		o.ValueSize = 256
	}
	if o.ValueSize < 0 {
		return o, fmt.Errorf("bench: value size must be ≥ 0, got %d", o.ValueSize)
	}
	if o.Ops < 0 {
		return o, fmt.Errorf("bench: ops must be ≥ 0, got %d", o.Ops)
	}
	if o.Ops == 0 && o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Ops == 0 && o.Duration < 0 {
		return o, fmt.Errorf("bench: duration must be > 0, got %s", o.Duration)
	}
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.EtcdBinary == "" {
		o.EtcdBinary = DefaultEtcdBinary
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = defaultReadyTimeout
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = defaultOpTimeout
	}
	if len(o.Endpoints) > 0 {
		switch len(o.Targets) {
		case 0:
			o.Targets = []string{TargetExternal}
		case 1:
		default:
			return o, fmt.Errorf("bench: with endpoints, give at most one target name (a label), got %q", o.Targets)
		}
		return o, nil
	}
	if len(o.Targets) == 0 {
		o.Targets = []string{TargetSynod, TargetEtcd}
	}
	seen := map[string]bool{}
	for _, t := range o.Targets {
		if t != TargetSynod && t != TargetEtcd {
			return o, fmt.Errorf("bench: unknown target %q: want synod or etcd", t)
		}
		if seen[t] {
			return o, fmt.Errorf("bench: target %q given twice", t)
		}
		seen[t] = true
	}
	if seen[TargetSynod] && o.SynodBinary == "" {
		return o, errors.New("bench: SynodBinary is required for the synod target")
	}
	return o, nil
}

// Run benchmarks every target and returns the report. On error (including
// ctx's end, e.g. SIGINT) it returns the results gathered so far with the
// error; every process it started is stopped and its temporary dir removed
// before it returns.
func Run(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Started:   time.Now(),
		Keys:      o.Keys,
		ValueSize: o.ValueSize,
		Duration:  o.Duration,
		Ops:       o.Ops,
		NumCPU:    runtime.NumCPU(),
	}
	if o.Ops > 0 {
		rep.Duration = 0
	}
	if len(o.Endpoints) > 0 {
		rep.Endpoints = o.Endpoints
		progressf(o, "%s: benchmarking running cluster at %s", o.Targets[0], strings.Join(o.Endpoints, ","))
		return rep, runTarget(ctx, o, rep, o.Targets[0], o.Endpoints)
	}

	rep.Masters = o.Masters
	var targets []string
	for _, t := range o.Targets {
		if t != TargetEtcd {
			targets = append(targets, t)
			continue
		}
		if _, err := os.Stat(o.EtcdBinary); err != nil {
			if o.RequireEtcd {
				return nil, fmt.Errorf("bench: etcd is required (CI=true) but %s is missing: %w", o.EtcdBinary, err)
			}
			note := fmt.Sprintf("etcd not found at %s (apt-get install etcd-server): synod was benchmarked alone, without the etcd baseline", o.EtcdBinary)
			rep.Notes = append(rep.Notes, note)
			progressf(o, "NOTE: %s", note)
			continue
		}
		rep.EtcdVersion = etcdVersion(o.EtcdBinary)
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return rep, errors.New("bench: nothing to benchmark")
	}

	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(o.Dir, "synod-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if err := runLaunched(ctx, o, rep, t, filepath.Join(tmp, t)); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// runLaunched starts a cluster of target, benchmarks it and stops it.
func runLaunched(ctx context.Context, o Options, rep *Report, target, dir string) (retErr error) {
	lo := launch.Options{
		Binary:  o.SynodBinary,
		Masters: o.Masters,
		Dir:     dir,
		Logger:  o.Logger,
		// The data is thrown away: don't wait long for a leader to hand
		// over to members that are stopping too.
		StopTimeout: 5 * time.Second,
	}
	if target == TargetEtcd {
		lo.Binary = o.EtcdBinary
		lo.Command = launch.EtcdCommand(o.EtcdBinary)
	}
	progressf(o, "%s: starting %d members under %s", target, o.Masters, dir)
	c, err := launch.Start(ctx, lo)
	if err != nil {
		return fmt.Errorf("bench: %s: start cluster: %w", target, err)
	}
	defer func() {
		progressf(o, "%s: stopping cluster", target)
		if err := c.Stop(); err != nil && retErr == nil {
			retErr = fmt.Errorf("bench: %s: stop cluster: %w", target, err)
		}
	}()
	rctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	err = c.WaitReady(rctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("bench: %s: cluster not ready after %s: %w%s", target, o.ReadyTimeout, err, logTails(c.Masters()))
	}
	if err := settle(ctx, o, c.Endpoints()); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("bench: %s: %w%s", target, err, logTails(c.Masters()))
	}
	if err := runTarget(ctx, o, rep, target, c.Endpoints()); err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("%w%s", err, logTails(c.Masters()))
		}
		return err
	}
	return nil
}

// settle waits until a put through every endpoint succeeds: a fresh cluster
// answers reads (WaitReady) a little before followers forward writes
// reliably, and a timed-out first put would count as a benchmark error.
func settle(ctx context.Context, o Options, endpoints []string) error {
	sctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	for _, ep := range endpoints {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{ep},
			DialTimeout: defaultDialTimeout,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return fmt.Errorf("connect to %s: %w", ep, err)
		}
		for {
			pctx, pcancel := context.WithTimeout(sctx, 2*time.Second)
			_, err = cli.Put(pctx, "bench/warmup", "x")
			pcancel()
			if err == nil || sctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		cli.Close()
		if err != nil {
			return fmt.Errorf("no put through %s succeeded within %s: %w", ep, o.ReadyTimeout, err)
		}
	}
	return nil
}

// runTarget runs every concurrency level's phases against endpoints.
func runTarget(ctx context.Context, o Options, rep *Report, target string, endpoints []string) error {
	w := &workload{
		o:     o,
		value: strings.Repeat("v", o.ValueSize),
	}
	for _, n := range o.Clients {
		if err := runLevel(ctx, w, rep, target, endpoints, n); err != nil {
			return err
		}
	}
	return nil
}

// runLevel runs the three phases with n clients, each its own connection to
// one endpoint, round-robin (etcd benchmark's --conns=--clients).
func runLevel(ctx context.Context, w *workload, rep *Report, target string, endpoints []string, n int) error {
	clis, err := dial(ctx, w.o, endpoints, n)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", target, err)
	}
	defer func() {
		for _, c := range clis {
			c.Close()
		}
	}()
	for _, ph := range Phases {
		res, err := w.phase(ctx, ph, clis)
		res.Target = target
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("bench: %s: %s with %d clients: %w", target, ph, n, err)
		}
		rep.Results = append(rep.Results, res)
		errNote := ""
		if res.Errors > 0 {
			errNote = fmt.Sprintf("  (%d errors, first: %s)", res.Errors, res.FirstErr)
		}
		progressf(w.o, "%-6s %-17s clients=%-3d %9.0f ops/s  p50 %s  p99 %s%s",
			target, ph, n, res.OpsPerSec, fmtMs(res.P50), fmtMs(res.P99), errNote)
	}
	return nil
}

// dial opens n clients, client i to endpoints[i%len], and checks each with
// a linearizable Get, so connection setup stays out of the measurements.
func dial(ctx context.Context, o Options, endpoints []string, n int) ([]*clientv3.Client, error) {
	clis := make([]*clientv3.Client, 0, n)
	fail := func(err error) ([]*clientv3.Client, error) {
		for _, c := range clis {
			c.Close()
		}
		return nil, err
	}
	for i := range n {
		ep := endpoints[i%len(endpoints)]
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{ep},
			DialTimeout: defaultDialTimeout,
			Logger:      zap.NewNop(),
			Context:     ctx,
		})
		if err != nil {
			return fail(fmt.Errorf("connect to %s: %w", ep, err))
		}
		clis = append(clis, c)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range clis {
		wg.Go(func() {
			gctx, cancel := context.WithTimeout(ctx, o.OpTimeout)
			defer cancel()
			if _, err := c.Get(gctx, "bench/warmup"); err != nil {
				errs[i] = fmt.Errorf("warm-up get on %s: %w", endpoints[i%len(endpoints)], err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	return clis, nil
}

// workload is the state one target's phases share.
type workload struct {
	o     Options
	value string
	next  atomic.Int64 // put sequence number: key = next % Keys
}

// existing returns how many keys the put phases have written so far (all of
// them once the sequence has wrapped), never less than 1.
func (w *workload) existing() int64 {
	return max(1, min(w.next.Load(), int64(w.o.Keys)))
}

// Key returns the benchmark key for sequence number i.
func Key(i int64, keys int) string {
	return fmt.Sprintf("bench/%08d", i%int64(keys))
}

// phase runs one phase with every client concurrently until the duration
// has passed or Ops requests were issued. A request in flight when the
// duration ends is let finish and counted (as etcd's benchmark does): cutting
// it off would turn it into a spurious error, since the server sees the
// deadline too and may answer "request timed out" first.
func (w *workload) phase(ctx context.Context, ph string, clis []*clientv3.Client) (Result, error) {
	res := Result{Phase: ph, Clients: len(clis)}
	existing := w.existing()
	seed := uint64(time.Now().UnixNano())
	rngs := make([]*rand.Rand, len(clis))
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)))
	}
	d := drive(ctx, len(clis), w.o.Duration, w.o.Ops, w.o.OpTimeout, func(octx context.Context, i int) error {
		cli := clis[i]
		var err error
		switch ph {
		case PhasePut:
			_, err = cli.Put(octx, Key(w.next.Add(1)-1, w.o.Keys), w.value)
		case PhaseGetLinearizable:
			_, err = cli.Get(octx, Key(rngs[i].Int64N(existing), w.o.Keys))
		case PhaseGetSerializable:
			_, err = cli.Get(octx, Key(rngs[i].Int64N(existing), w.o.Keys), clientv3.WithSerializable())
		}
		return err
	})
	res.Elapsed = d.elapsed
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Ops, res.Errors = len(d.sorted), d.errors
	if d.firstErr != nil {
		res.FirstErr = d.firstErr.Error()
	}
	if res.Ops == 0 {
		return res, fmt.Errorf("no request succeeded (%d failed; first error: %v)", res.Errors, d.firstErr)
	}
	res.OpsPerSec = float64(res.Ops) / res.Elapsed.Seconds()
	res.P50, res.P99, res.Max = latencies(d.sorted)
	return res, nil
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest sample with at least p% of the samples
// at or below it. It returns 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// rank = ceil(p/100 * n), computed in integers where possible to avoid
	// 0.99*100 = 98.99999 style rounding.
	rank := int(p * float64(n) / 100)
	if float64(rank)*100 < p*float64(n) {
		rank++
	}
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Ratios pairs every synod result with the etcd result of the same phase and
// concurrency level, in the order of the synod results.
func Ratios(results []Result) []Ratio {
	type key struct {
		phase   string
		clients int
	}
	etcd := map[key]Result{}
	for _, r := range results {
		if r.Target == TargetEtcd {
			etcd[key{r.Phase, r.Clients}] = r
		}
	}
	var out []Ratio
	for _, s := range results {
		if s.Target != TargetSynod {
			continue
		}
		e, ok := etcd[key{s.Phase, s.Clients}]
		if !ok {
			continue
		}
		out = append(out, Ratio{
			Phase:      s.Phase,
			Clients:    s.Clients,
			Throughput: ratio(s.OpsPerSec, e.OpsPerSec),
			P99:        ratio(float64(s.P99), float64(e.P99)),
		})
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

var etcdVersionRE = regexp.MustCompile(`etcd Version: (\S+)`)

// etcdVersion returns the version etcd --version prints, or "unknown".
func etcdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if m := etcdVersionRE.FindSubmatch(out); err == nil && m != nil {
		return string(m[1])
	}
	return "unknown"
}

// logTails returns the last lines of every master's log, to explain a failure
// before the data dir (and the logs in it) is removed.
func logTails(ms []launch.Master) string {
	var b strings.Builder
	for _, m := range ms {
		data, err := os.ReadFile(m.LogFile)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > logTailLinesOnFailure {
			lines = lines[len(lines)-logTailLinesOnFailure:]
		}
		fmt.Fprintf(&b, "\n--- last lines of %s (%s):\n%s", m.Name, m.LogFile, strings.Join(lines, "\n"))
	}
	return b.String()
}

func progressf(o Options, format string, args ...any) {
	fmt.Fprintf(o.Progress, format+"\n", args...)
}
