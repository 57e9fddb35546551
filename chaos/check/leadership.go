package check

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The components' own records (leader/leader.go): a term starts with
// "leadership acquired; component active" at=..., and ends with
// "leadership lost or given up; component stopped" at=... active_until=...
// (the earlier of the stop and the end of the term's write fence).
const (
	msgAcquired = "leadership acquired; component active"
	msgStopped  = "leadership lost or given up; component stopped"
	msgStarting = "starting master"
)

var logFieldRE = regexp.MustCompile(`(?:^|\s)(msg|component|identity|at|active_until|time)=("(?:[^"\\]|\\.)*"|\S+)`)

// Interval is one term of a component on one master.
type Interval struct {
	Component string    `json:"component"`
	Master    string    `json:"master"`
	Identity  string    `json:"identity"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"` // zero: still active at the end of the log
	// EndedBy says how End was found: "stopped" (its own record),
	// "killed" (a kill fault on its master), "restarted" (the master's
	// next start), or "" (still active).
	EndedBy string `json:"ended_by,omitempty"`
}

func (iv Interval) end() time.Time {
	if iv.End.IsZero() {
		return time.Unix(1<<40, 0) // still active
	}
	return iv.End
}

// killsOf returns when each master was SIGKILLed according to the fault
// timeline: kinds that kill (kill, leader-kill, majority-kill,
// component-kill, restart, machine-stop) hit the masters named in Target.
func killsOf(faults []Fault) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, f := range faults {
		// machine-stop (a deployed cluster's machine killed whole) kills
		// its master as well.
		if !strings.Contains(f.Kind, "kill") && f.Kind != "restart" && f.Kind != "machine-stop" {
			continue
		}
		for _, name := range targets(f.Target) {
			out[name] = append(out[name], f.Start)
		}
	}
	return out
}

// targets splits a fault's Target: master names separated by commas,
// spaces or "|" (the harness writes a split as "minority|majority").
func targets(t string) []string {
	return strings.FieldsFunc(t, func(r rune) bool { return r == ',' || r == ' ' || r == '|' })
}

func logField(fields map[string]string, k string) string {
	v := fields[k]
	if strings.HasPrefix(v, `"`) {
		v = strings.Trim(v, `"`)
		v = strings.ReplaceAll(v, `\"`, `"`)
	}
	return v
}

// readIntervals rebuilds every term of every component from the masters'
// logs. A term with no stop record ended at the first kill of its master
// after it started, or at the master's next start if that came first.
func readIntervals(masters []MasterState, faults []Fault) ([]Interval, error) {
	kills := killsOf(faults)
	var all []Interval
	for _, m := range masters {
		if m.LogPath == "" {
			return nil, fmt.Errorf("no log file for %s", m.Name)
		}
		f, err := os.Open(m.LogPath)
		if err != nil {
			return nil, fmt.Errorf("leadership: %w", err)
		}
		open := map[string]Interval{} // component/identity -> term
		var starts []time.Time        // the master's process starts
		var dangling []Interval       // terms of earlier processes with no stop record
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "msg=") {
				continue
			}
			fields := map[string]string{}
			for _, m := range logFieldRE.FindAllStringSubmatch(line, -1) {
				fields[m[1]] = m[2]
			}
			msg := logField(fields, "msg")
			switch msg {
			case msgStarting:
				if t, err := time.Parse(time.RFC3339Nano, logField(fields, "time")); err == nil {
					starts = append(starts, t)
				}
				// A new process: terms still open belong to the old
				// one (a rebooted machine may even reuse its pid, and
				// so its identity).
				for k, iv := range open {
					dangling = append(dangling, iv)
					delete(open, k)
				}
				continue
			case msgAcquired, msgStopped:
			default:
				continue
			}
			comp, id := logField(fields, "component"), logField(fields, "identity")
			at, err := time.Parse(time.RFC3339Nano, logField(fields, "at"))
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("leadership: %s: bad at= in %q", m.LogPath, line)
			}
			key := comp + "/" + id
			if msg == msgAcquired {
				open[key] = Interval{Component: comp, Master: m.Name, Identity: id, Start: at}
				continue
			}
			iv, ok := open[key]
			if !ok {
				continue
			}
			if au, err := time.Parse(time.RFC3339Nano, logField(fields, "active_until")); err == nil && au.Before(at) {
				at = au
			}
			iv.End, iv.EndedBy = at, "stopped"
			all = append(all, iv)
			delete(open, key)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("leadership: read %s: %w", m.LogPath, err)
		}
		for _, iv := range open {
			dangling = append(dangling, iv)
		}
		for _, iv := range dangling {
			for _, k := range kills[m.Name] {
				if k.After(iv.Start) && (iv.End.IsZero() || k.Before(iv.End)) {
					iv.End, iv.EndedBy = k, "killed"
				}
			}
			// A term never outlives its process: the master's next
			// start ends it even without a fault on record (a deployed
			// master that crashed or was restarted by hand).
			for _, s := range starts {
				if s.After(iv.Start) {
					if iv.End.IsZero() || s.Before(iv.End) {
						iv.End, iv.EndedBy = s, "restarted"
					}
					break
				}
			}
			all = append(all, iv)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Start.Before(all[j].Start) })
	return all, nil
}

// LeadershipDetails are the figures of one component's leadership check.
type LeadershipDetails struct {
	Terms    []Interval `json:"terms"`
	Overlaps []string   `json:"overlaps,omitempty"`
}

// checkLeadership: no two terms of a component overlap.
func checkLeadership(component string, all []Interval) Result {
	r := Result{Name: "single-active-" + component}
	var terms []Interval
	for _, iv := range all {
		if iv.Component == component {
			terms = append(terms, iv)
		}
	}
	d := LeadershipDetails{Terms: terms}
	for i := range terms {
		for j := i + 1; j < len(terms); j++ {
			a, b := terms[i], terms[j]
			if b.Start.Before(a.end()) {
				d.Overlaps = append(d.Overlaps, fmt.Sprintf("TWO ACTIVE: %s on %s [%s, %s] and %s on %s from %s (%s overlap)",
					a.Identity, a.Master, stampT(a.Start), endString(a), b.Identity, b.Master, stampT(b.Start),
					minTime(a.end(), b.end()).Sub(b.Start).Round(time.Millisecond)))
			}
		}
	}
	r.Details = d
	switch {
	case len(d.Overlaps) > 0:
		r.Evidence = fmt.Sprintf("%d overlapping terms of %s: %s", len(d.Overlaps), component, strings.Join(d.Overlaps, "; "))
	case len(terms) == 0:
		r.Evidence = fmt.Sprintf("no %s term in any master's log", component)
	default:
		r.Pass = true
		masters := map[string]bool{}
		for _, t := range terms {
			masters[t.Master] = true
		}
		r.Evidence = fmt.Sprintf("%d terms of %s on %d masters, never two active at once", len(terms), component, len(masters))
	}
	return r
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func endString(iv Interval) string {
	if iv.End.IsZero() {
		return "end"
	}
	return stampT(iv.End) + " " + iv.EndedBy
}

func stampT(t time.Time) string { return t.UTC().Format("15:04:05.000") }
