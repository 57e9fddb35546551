package check

import (
	"fmt"
	"math"
	"sort"
	"time"

	"synod/chaos/history"
)

// FaultRecovery is how long one fault kept writes (or a component) away.
type FaultRecovery struct {
	Kind      string        `json:"kind"`
	Target    string        `json:"target"`
	Start     time.Time     `json:"start"`
	Recovered bool          `json:"recovered"`
	Took      time.Duration `json:"took_ns"`
	TookText  string        `json:"took"`
}

// RecoveryDetails are the recovery times of all faults.
type RecoveryDetails struct {
	Faults    []FaultRecovery `json:"faults"`
	P50       time.Duration   `json:"p50_ns"`
	P99       time.Duration   `json:"p99_ns"`
	Max       time.Duration   `json:"max_ns"`
	P50Text   string          `json:"p50"`
	P99Text   string          `json:"p99"`
	MaxText   string          `json:"max"`
	Recovered int             `json:"recovered"`
}

// percentile is the nearest-rank percentile of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func summarize(d *RecoveryDetails) []time.Duration {
	var ds []time.Duration
	for _, f := range d.Faults {
		if f.Recovered {
			ds = append(ds, f.Took)
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	d.Recovered = len(ds)
	d.P50, d.P99 = percentile(ds, 50), percentile(ds, 99)
	if len(ds) > 0 {
		d.Max = ds[len(ds)-1]
	}
	d.P50Text, d.P99Text, d.MaxText = round(d.P50), round(d.P99), round(d.Max)
	return ds
}

func round(d time.Duration) string { return d.Round(time.Millisecond).String() }

// checkWriteRecovery: for each fault, the time from its start until a write
// invoked after the start was acknowledged. It fails only when the cluster
// never took a write again after some fault.
func checkWriteRecovery(in Input) Result {
	r := Result{Name: "recovery-writes"}
	from := in.RecoveryFrom
	if from == nil {
		from = func(t time.Time) (time.Time, bool) { return firstWriteOKAfter(in.History.Ops, t) }
	}
	d := RecoveryDetails{}
	var never []string
	for _, f := range in.Faults {
		fr := FaultRecovery{Kind: f.Kind, Target: f.Target, Start: f.Start}
		if t, ok := from(f.Start); ok {
			fr.Recovered, fr.Took = true, t.Sub(f.Start)
			fr.TookText = round(fr.Took)
		} else {
			never = append(never, fmt.Sprintf("%s %s at %s", f.Kind, f.Target, stampT(f.Start)))
		}
		d.Faults = append(d.Faults, fr)
	}
	summarize(&d)
	r.Details = d
	switch {
	case len(in.Faults) == 0:
		r.Pass = true
		r.Evidence = "no faults"
	case len(never) > 0:
		r.Evidence = fmt.Sprintf("no write acknowledged after %d of %d faults: %v", len(never), len(in.Faults), never)
	default:
		r.Pass = true
		r.Evidence = fmt.Sprintf("writes recovered after all %d faults: p50 %s, p99 %s, max %s", len(in.Faults), d.P50Text, d.P99Text, d.MaxText)
	}
	return r
}

func firstWriteOKAfter(ops []history.Op, t time.Time) (time.Time, bool) {
	var best int64
	for _, o := range ops {
		if o.OK && o.IsWrite() && o.Call >= t.UnixNano() && (best == 0 || o.Return < best) {
			best = o.Return
		}
	}
	if best == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, best), true
}

// checkComponentRecovery: for each fault, how long the component had no
// active term: 0 when the term active at the fault's start outlived it by
// more than a moment (the fault did not touch it), else until the next
// term started.
func checkComponentRecovery(component string, all []Interval, faults []Fault) Result {
	r := Result{Name: "recovery-" + component}
	var terms []Interval
	for _, iv := range all {
		if iv.Component == component {
			terms = append(terms, iv)
		}
	}
	d := RecoveryDetails{}
	var never []string
	for _, f := range faults {
		fr := FaultRecovery{Kind: f.Kind, Target: f.Target, Start: f.Start}
		unaffected := false
		for _, t := range terms {
			if !t.Start.After(f.Start) && t.end().After(f.Start.Add(time.Second)) && (f.End.IsZero() || t.end().After(f.End)) {
				unaffected = true
			}
		}
		if unaffected {
			fr.Recovered = true
		} else {
			for _, t := range terms {
				if t.Start.After(f.Start) {
					fr.Recovered, fr.Took = true, t.Start.Sub(f.Start)
					break
				}
			}
		}
		fr.TookText = round(fr.Took)
		if !fr.Recovered {
			never = append(never, fmt.Sprintf("%s %s at %s", f.Kind, f.Target, stampT(f.Start)))
		}
		d.Faults = append(d.Faults, fr)
	}
	summarize(&d)
	r.Details = d
	switch {
	case len(faults) == 0:
		r.Pass = true
		r.Evidence = "no faults"
	case len(never) > 0:
		r.Evidence = fmt.Sprintf("%s never active again after %d of %d faults: %v", component, len(never), len(faults), never)
	default:
		r.Pass = true
		r.Evidence = fmt.Sprintf("%s active again after all %d faults: p50 %s, p99 %s, max %s", component, len(faults), d.P50Text, d.P99Text, d.MaxText)
	}
	return r
}
