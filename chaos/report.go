package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"synod/chaos/check"
	"synod/chaos/history"
	"synod/chaos/workload"
)

// Report is the outcome of a Run.
type Report struct {
	Dir      string
	Options  Options
	Schedule []Step
	Faults   []check.Fault
	// FaultLeaders is, per fault, the raft leader just before it.
	FaultLeaders []string
	// Unhealthy lists the heals after which the cluster did not become
	// healthy within Options.HealthTimeout.
	Unhealthy  []string
	Stats      workload.Stats
	History    *history.History
	OpsChecked int
	Results    []check.Result
	Recovery   Recovery
}

// Recovery summarises, over the faults, the time from injecting a fault to
// the completion of the first write invoked after it that was acknowledged:
// how long the fault kept the cluster from taking writes.
type Recovery struct {
	Faults      int           `json:"faults"`
	P50         time.Duration `json:"p50"`
	P99         time.Duration `json:"p99"`
	Max         time.Duration `json:"max"`
	MaxFault    string        `json:"max_fault,omitempty"`
	Unrecovered int           `json:"unrecovered"` // faults after which no write succeeded
	// The same over the faults that hit the raft leader (killed, paused
	// or cut off the leader, or a majority): those cost an election.
	LeaderFaults int           `json:"leader_faults"`
	LeaderP50    time.Duration `json:"leader_p50"`
	LeaderP99    time.Duration `json:"leader_p99"`
	PerFault     []string      `json:"per_fault,omitempty"`
}

// recoveryStats computes Recovery with firstOK (the workload's
// FirstWriteOKAfter); leaders[i] is the leader before fault i.
func recoveryStats(faults []check.Fault, leaders []string, firstOK func(time.Time) (time.Time, bool)) Recovery {
	var rec Recovery
	var ds, lds []time.Duration
	for i, f := range faults {
		t, ok := firstOK(f.Start)
		hit := i < len(leaders) && leaders[i] != "" && slices.Contains(strings.FieldsFunc(f.Target, func(r rune) bool { return r == ',' || r == '|' }), leaders[i])
		if f.Kind == string(KindSplit) {
			// Both sides are named; the leader is hit when it is on
			// the minority side, which is named first.
			minority, _, _ := strings.Cut(f.Target, "|")
			hit = slices.Contains(strings.Split(minority, ","), leaders[i])
		}
		if f.Kind == string(KindMajorityKill) || f.Kind == string(KindRestart) {
			hit = true // no quorum: an election either way
		}
		note := ""
		if hit {
			note = " (leader)"
		}
		if !ok {
			rec.Unrecovered++
			rec.PerFault = append(rec.PerFault, fmt.Sprintf("#%d %s %s%s: no write succeeded after it", i+1, f.Kind, f.Target, note))
			continue
		}
		d := t.Sub(f.Start)
		ds = append(ds, d)
		if hit {
			lds = append(lds, d)
		}
		rec.PerFault = append(rec.PerFault, fmt.Sprintf("#%d %s %s%s: %s", i+1, f.Kind, f.Target, note, d.Round(time.Millisecond)))
		if d > rec.Max {
			rec.Max, rec.MaxFault = d, fmt.Sprintf("#%d %s %s", i+1, f.Kind, f.Target)
		}
	}
	rec.Faults, rec.LeaderFaults = len(ds), len(lds)
	if len(ds) > 0 {
		slices.Sort(ds)
		rec.P50, rec.P99 = percentile(ds, 0.50), percentile(ds, 0.99)
	}
	if len(lds) > 0 {
		slices.Sort(lds)
		rec.LeaderP50, rec.LeaderP99 = percentile(lds, 0.50), percentile(lds, 0.99)
	}
	return rec
}

// percentile of sorted ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// Pass reports whether every check passed (and there was at least one).
func (r *Report) Pass() bool {
	if len(r.Results) == 0 {
		return false
	}
	for _, res := range r.Results {
		if !res.Pass {
			return false
		}
	}
	return true
}

// Summary writes the summary table.
func (r *Report) Summary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tEVIDENCE")
	for _, res := range r.Results {
		verdict := "PASS"
		if !res.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", res.Name, verdict, oneLine(res.Evidence))
	}
	tw.Flush()
	failed := 0
	for _, res := range r.Results {
		if !res.Pass {
			failed++
		}
	}
	kinds := map[string]int{}
	for _, f := range r.Faults {
		kinds[f.Kind]++
	}
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(ks)
	fmt.Fprintf(w, "\nfaults injected: %d of %d scheduled (%s)\n", len(r.Faults), len(r.Schedule), strings.Join(ks, ", "))
	fmt.Fprintf(w, "operations checked: %d etcd (ok %d, failed %d, unknown %d), %d Kubernetes (ok %d)\n",
		r.OpsChecked, r.Stats.OK, r.Stats.Failed, r.Stats.Unknown, r.Stats.KubeOps, r.Stats.KubeOK)
	rec := r.Recovery
	fmt.Fprintf(w, "write recovery after a fault (%d faults): p50 %s, p99 %s, max %s", rec.Faults,
		rec.P50.Round(time.Millisecond), rec.P99.Round(time.Millisecond), rec.Max.Round(time.Millisecond))
	if rec.MaxFault != "" {
		fmt.Fprintf(w, " (%s)", rec.MaxFault)
	}
	if rec.LeaderFaults > 0 {
		fmt.Fprintf(w, "; the %d that hit the leader: p50 %s, p99 %s", rec.LeaderFaults,
			rec.LeaderP50.Round(time.Millisecond), rec.LeaderP99.Round(time.Millisecond))
	}
	if rec.Unrecovered > 0 {
		fmt.Fprintf(w, "; %d fault(s) with no write after them", rec.Unrecovered)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "checks failed: %d of %d\n", failed, len(r.Results))
	fmt.Fprintf(w, "report: %s\n", r.Dir)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}

// write writes the report directory: history/, faults.json, checks.json,
// recovery.json and summary.txt (the master logs, schedule.txt and
// harness.log are already there).
func (r *Report) write() error {
	var errs []error
	if r.History != nil {
		if err := r.History.WriteDir(filepath.Join(r.Dir, "history")); err != nil {
			errs = append(errs, err)
		}
	}
	type faultRecord struct {
		check.Fault
		Leader string `json:"leader,omitempty"` // the raft leader just before
	}
	timeline := make([]faultRecord, len(r.Faults))
	for i, f := range r.Faults {
		timeline[i].Fault = f
		if i < len(r.FaultLeaders) {
			timeline[i].Leader = r.FaultLeaders[i]
		}
	}
	for name, v := range map[string]any{"faults.json": timeline, "checks.json": r.Results, "recovery.json": r.Recovery} {
		b, err := json.MarshalIndent(v, "", " ")
		if err == nil {
			err = os.WriteFile(filepath.Join(r.Dir, name), b, 0o644)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("chaos: write %s: %w", name, err))
		}
	}
	var b strings.Builder
	r.Summary(&b)
	if err := os.WriteFile(filepath.Join(r.Dir, "summary.txt"), []byte(b.String()), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("chaos: write summary: %w", err))
	}
	return errors.Join(errs...)
}
