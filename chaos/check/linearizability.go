package check

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"synod/chaos/history"
)

// kvInput and kvOutput are one etcd op as porcupine sees it.
type kvInput struct {
	Kind, Key, Value string
	Expect           int64
}

type kvOutput struct {
	Unknown   bool
	Found     bool
	Value     string
	ModRev    int64
	Revision  int64
	Succeeded bool
}

// kvState is one key of etcd's KV. ModRev is 0 when the key exists but was
// written by an op whose outcome (and so revision) is unknown. MinRev is a
// lower bound for what comes next: every later write has a revision above
// it and every later read a header revision at least it.
type kvState struct {
	Exists bool
	Value  string
	ModRev int64
	MinRev int64
}

// kvModel models one key of etcd's KV with values and mod revisions.
// It is nondeterministic only where an unknown-outcome compare-and-swap
// meets a key whose mod revision is unknown. Ops whose outcome is unknown
// return at MaxInt64, so porcupine may place them anywhere after their
// call, including "never" (after everything else).
var kvModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(kvInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{kvState{}} },
	Step: func(state, input, output any) []any {
		return kvStep(state.(kvState), input.(kvInput), output.(kvOutput))
	},
	Equal: func(a, b any) bool { return a.(kvState) == b.(kvState) },
	DescribeOperation: func(input, output any) string {
		return describeOp(input.(kvInput), output.(kvOutput))
	},
	DescribeOperationMetadata: func(m any) string {
		o, ok := m.(history.Op)
		if !ok {
			return ""
		}
		s := fmt.Sprintf("client %d via %s", o.Client, o.Endpoint)
		if o.Err != "" {
			s += ": " + o.Err
		}
		return s
	},
	DescribeState: func(state any) string {
		s := state.(kvState)
		if !s.Exists {
			return fmt.Sprintf("absent (rev>%d)", s.MinRev)
		}
		if s.ModRev == 0 {
			return fmt.Sprintf("%q@? (rev>%d)", s.Value, s.MinRev)
		}
		return fmt.Sprintf("%q@%d", s.Value, s.ModRev)
	},
}

func describeOp(in kvInput, out kvOutput) string {
	res := ""
	switch {
	case out.Unknown:
		res = "?"
	case in.Kind == history.KindGet && out.Found:
		res = fmt.Sprintf("%q@%d rev %d", out.Value, out.ModRev, out.Revision)
	case in.Kind == history.KindGet:
		res = fmt.Sprintf("absent rev %d", out.Revision)
	case in.Kind == history.KindCAS:
		res = fmt.Sprintf("%v rev %d", out.Succeeded, out.Revision)
	case in.Kind == history.KindDelete:
		res = fmt.Sprintf("deleted=%v rev %d", out.Found, out.Revision)
	default:
		res = fmt.Sprintf("rev %d", out.Revision)
	}
	switch in.Kind {
	case history.KindPut:
		return fmt.Sprintf("put(%s, %q) -> %s", in.Key, in.Value, res)
	case history.KindCAS:
		return fmt.Sprintf("cas(%s, modrev=%d, %q) -> %s", in.Key, in.Expect, in.Value, res)
	case history.KindDelete:
		return fmt.Sprintf("delete(%s) -> %s", in.Key, res)
	}
	return fmt.Sprintf("get(%s) -> %s", in.Key, res)
}

func kvStep(s kvState, in kvInput, out kvOutput) []any {
	written := func(rev int64) kvState {
		if rev == 0 { // unknown: only a bound is known
			return kvState{Exists: true, Value: in.Value, MinRev: s.MinRev}
		}
		return kvState{Exists: true, Value: in.Value, ModRev: rev, MinRev: rev}
	}
	switch in.Kind {
	case history.KindGet:
		if out.Revision < s.MinRev {
			return nil
		}
		if !out.Found {
			if s.Exists {
				return nil
			}
			return []any{s}
		}
		if !s.Exists || s.Value != out.Value || out.ModRev > out.Revision {
			return nil
		}
		if s.ModRev == 0 {
			if out.ModRev <= s.MinRev {
				return nil
			}
			return []any{kvState{Exists: true, Value: s.Value, ModRev: out.ModRev, MinRev: out.ModRev}}
		}
		if out.ModRev != s.ModRev {
			return nil
		}
		return []any{s}
	case history.KindPut:
		if out.Unknown {
			return []any{written(0)}
		}
		if out.Revision <= s.MinRev {
			return nil
		}
		return []any{written(out.Revision)}
	case history.KindCAS:
		holds, maybe := false, false
		switch {
		case in.Expect == 0:
			holds = !s.Exists
		case !s.Exists:
		case s.ModRev != 0:
			holds = s.ModRev == in.Expect
		default:
			maybe = in.Expect > s.MinRev
		}
		switch {
		case out.Unknown && maybe:
			return []any{written(0), s}
		case out.Unknown && holds:
			return []any{written(0)}
		case out.Unknown:
			return []any{s}
		case out.Succeeded && (holds || maybe) && out.Revision > s.MinRev:
			return []any{written(out.Revision)}
		case !out.Succeeded && !holds && out.Revision >= s.MinRev:
			return []any{s}
		}
		return nil
	case history.KindDelete:
		if out.Unknown {
			if s.Exists {
				return []any{kvState{MinRev: s.MinRev}}
			}
			return []any{s}
		}
		if out.Found != s.Exists {
			return nil
		}
		if !out.Found {
			if out.Revision < s.MinRev {
				return nil
			}
			return []any{s}
		}
		if out.Revision <= s.MinRev {
			return nil
		}
		return []any{kvState{MinRev: out.Revision}}
	}
	return nil
}

// porcupineOps turns the history into porcupine operations: failed reads
// and writes that certainly failed are dropped, unknown writes stay open
// until the end (Return = MaxInt64).
//
// With a replay of the store (every applied write of the key prefix, from a
// member after the run), unknown puts and compare-and-swaps are resolved as
// etcd's robustness tests do with the persisted requests: values are
// unique, so one whose value was never applied is dropped (it had no
// effect), and one whose value was applied at revision R becomes a write at
// R that returned no later than the first op that saw revision R or later.
// This keeps porcupine's search small on long runs with many faults.
func porcupineOps(ops []history.Op, replay []history.WatchEvent) (out []porcupine.Operation, resolved, dropped int) {
	var applied map[string]int64 // value -> revision
	var firstSeen func(rev int64) int64
	// Keys with a DELETE in the replay that no acknowledged delete made:
	// only there may an unknown delete have taken effect.
	unexplainedDelete := map[string]bool{}
	if replay != nil {
		applied = map[string]int64{}
		ackedDelete := map[int64]string{}
		for _, o := range ops {
			if o.OK && o.Kind == history.KindDelete && o.Found {
				ackedDelete[o.Revision] = o.Key
			}
		}
		for _, e := range replay {
			if e.Type != "DELETE" {
				applied[e.Value] = e.ModRev
			} else if ackedDelete[e.ModRev] != e.Key {
				unexplainedDelete[e.Key] = true
			}
		}
		// seenBy[i]: the earliest return of an acknowledged op whose
		// revision is at least revs[i].
		type seen struct{ rev, ret int64 }
		var ss []seen
		for _, o := range ops {
			if o.OK {
				ss = append(ss, seen{o.Revision, o.Return})
			}
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].rev > ss[j].rev })
		for i := 1; i < len(ss); i++ {
			ss[i].ret = min(ss[i].ret, ss[i-1].ret)
		}
		firstSeen = func(rev int64) int64 {
			// ss is by descending revision with a running minimum: the
			// last entry with rev >= the wanted one has the answer.
			i := sort.Search(len(ss), func(i int) bool { return ss[i].rev < rev })
			if i == 0 {
				return math.MaxInt64
			}
			return ss[i-1].ret
		}
	}
	for _, o := range ops {
		if !o.OK && !o.Unknown {
			continue
		}
		in := kvInput{Kind: o.Kind, Key: o.Key, Value: o.Value, Expect: o.ExpectModRev}
		res := kvOutput{Unknown: !o.OK, Found: o.Found, Value: o.GotValue, ModRev: o.GotModRev, Revision: o.Revision, Succeeded: o.Succeeded}
		ret := o.Return
		if !o.OK {
			ret = math.MaxInt64
			if applied != nil && (o.Kind == history.KindPut || o.Kind == history.KindCAS) {
				rev, ok := applied[o.Value]
				if !ok {
					dropped++
					continue
				}
				res = kvOutput{Revision: rev, Succeeded: true}
				ret = max(firstSeen(rev), o.Call)
				resolved++
				// As the explanation should see it.
				o.OK, o.Unknown, o.Revision, o.Succeeded, o.Return = true, false, rev, true, ret
			}
			if applied != nil && o.Kind == history.KindDelete && !unexplainedDelete[o.Key] {
				// No deletion of this key is unaccounted for: this one
				// deleted nothing (or never ran), which is the same.
				dropped++
				continue
			}
		}
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: in, Call: o.Call, Output: res, Return: ret, Metadata: o})
	}
	return out, resolved, dropped
}

// LinearizabilityDetails are the figures of the linearizability check.
type LinearizabilityDetails struct {
	Operations int `json:"operations"`
	Unknown    int `json:"unknown_writes"`
	// Resolved and Dropped are unknown writes the store's replay showed
	// applied (at a known revision) or never applied.
	Resolved      int      `json:"unknown_resolved,omitempty"`
	Dropped       int      `json:"unknown_dropped,omitempty"`
	FailedReads   int      `json:"failed_reads_dropped"`
	Keys          int      `json:"keys"`
	FailedKeys    []string `json:"failed_keys,omitempty"`
	TimedOutKeys  []string `json:"timed_out_keys,omitempty"`
	Visualization string   `json:"visualization,omitempty"`
	Seconds       float64  `json:"seconds"`
}

// checkLinearizability runs porcupine key by key (the model partitions by
// key anyway; doing it here names the failing keys) within one deadline.
func checkLinearizability(in Input) Result {
	r := Result{Name: "linearizability"}
	start := time.Now()
	ops, resolved, dropped := porcupineOps(in.History.Ops, in.replay)
	d := LinearizabilityDetails{Operations: len(ops), Resolved: resolved, Dropped: dropped}
	for _, o := range in.History.Ops {
		switch {
		case o.Unknown:
			d.Unknown++
		case !o.OK && !o.IsWrite():
			d.FailedReads++
		}
	}
	model := kvModel.ToModel()
	parts := model.Partition(ops)
	d.Keys = len(parts)
	deadline := start.Add(in.LinearizabilityTimeout)
	var bad []porcupine.Operation
	var explain []string
	for _, p := range parts {
		key := p[0].Input.(kvInput).Key
		left := time.Until(deadline)
		if left <= 0 {
			d.TimedOutKeys = append(d.TimedOutKeys, key)
			continue
		}
		switch porcupine.CheckOperationsTimeout(model, p, left) {
		case porcupine.Illegal:
			d.FailedKeys = append(d.FailedKeys, key)
			bad = append(bad, p...)
			explain = append(explain, explainKey(metadataOps(p), key))
		case porcupine.Unknown:
			d.TimedOutKeys = append(d.TimedOutKeys, key)
		}
	}
	if len(bad) > 0 && in.ReportDir != "" {
		_, info := porcupine.CheckOperationsVerbose(model, bad, time.Minute)
		info.AddAnnotations(faultAnnotations(in.Faults))
		path := filepath.Join(in.ReportDir, "linearizability.html")
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			explain = append(explain, fmt.Sprintf("(visualization failed: %v)", err))
		} else {
			d.Visualization = path
		}
	}
	d.Seconds = time.Since(start).Seconds()
	r.Details = d
	switch {
	case len(d.FailedKeys) > 0:
		r.Evidence = fmt.Sprintf("NOT linearizable on %d of %d keys (%s): %s", len(d.FailedKeys), d.Keys,
			strings.Join(d.FailedKeys, ", "), strings.Join(explain, "; "))
		if d.Visualization != "" {
			r.Evidence += "; see " + d.Visualization
		}
	case len(d.TimedOutKeys) > 0:
		r.Evidence = fmt.Sprintf("porcupine did not finish within %s on %d keys (%s): result unknown, not a pass",
			in.LinearizabilityTimeout, len(d.TimedOutKeys), strings.Join(d.TimedOutKeys, ", "))
	case len(ops) == 0:
		r.Evidence = "no operations to check"
	default:
		r.Pass = true
		r.Evidence = fmt.Sprintf("%d operations on %d keys linearizable (%d unknown-outcome writes: %d applied per the store, %d never; %d failed reads dropped) in %.1fs",
			len(ops), d.Keys, d.Unknown, d.Resolved, d.Dropped, d.FailedReads, d.Seconds)
	}
	return r
}

func metadataOps(p []porcupine.Operation) []history.Op {
	out := make([]history.Op, len(p))
	for i, o := range p {
		out[i] = o.Metadata.(history.Op)
	}
	return out
}

// explainKey looks for the plainest witness of a non-linearizable key: a
// read that returned an older state than a write acknowledged before the
// read was invoked.
func explainKey(ops []history.Op, key string) string {
	var writes, reads []history.Op
	for _, o := range ops {
		if o.Key != key || !o.OK {
			continue
		}
		switch {
		case o.Kind == history.KindGet:
			reads = append(reads, o)
		case o.Kind == history.KindPut || o.Kind == history.KindCAS && o.Succeeded || o.Kind == history.KindDelete && o.Found:
			writes = append(writes, o)
		}
	}
	for _, g := range reads {
		for _, w := range writes {
			if w.Return >= g.Call {
				continue
			}
			if (g.Found && g.GotModRev < w.Revision) || (!g.Found && w.Kind != history.KindDelete && g.Revision < w.Revision) {
				got := "absent"
				if g.Found {
					got = fmt.Sprintf("%q (mod revision %d)", g.GotValue, g.GotModRev)
				}
				done := "was acknowledged"
				if w.Err != "" { // an unknown write the replay resolved
					done = "had taken effect (per the store's replay; its client saw " + w.Err + ")"
				}
				return fmt.Sprintf("stale read on %s: client %d's get via %s at %s returned %s, but client %d's %s at revision %d via %s %s %s earlier",
					key, g.Client, g.Endpoint, stamp(g.Call), got, w.Client, writeString(w), w.Revision, w.Endpoint, done,
					time.Duration(g.Call-w.Return).Round(time.Microsecond))
			}
		}
	}
	// Two compare-and-swaps that both won on the same mod revision.
	won := map[int64]history.Op{}
	for _, w := range writes {
		if w.Kind != history.KindCAS {
			continue
		}
		if p, dup := won[w.ExpectModRev]; dup {
			return fmt.Sprintf("lost update on %s: client %d's and client %d's compare-and-swaps on mod revision %d both succeeded (revisions %d and %d)",
				key, p.Client, w.Client, w.ExpectModRev, p.Revision, w.Revision)
		}
		won[w.ExpectModRev] = w
	}
	return fmt.Sprintf("no single stale read explains %s; see the visualization", key)
}

func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format("15:04:05.000000") }

func faultAnnotations(faults []Fault) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, f := range faults {
		end := f.End
		if end.IsZero() {
			end = f.Start
		}
		out = append(out, porcupine.Annotation{Tag: "faults", Start: f.Start.UnixNano(), End: end.UnixNano(),
			Description: f.Kind + " " + f.Target, BackgroundColor: "#ffd0d0"})
	}
	return out
}

// RevisionDetails are the figures of the global revision check.
type RevisionDetails struct {
	AckedWrites int      `json:"acked_writes"`
	Checked     int      `json:"ops_checked"`
	Violations  int      `json:"violations"`
	Examples    []string `json:"examples,omitempty"`
}

// checkRevisions checks the global revision across keys, which the per-key
// model cannot see: acknowledged writes have distinct revisions, an op
// invoked after another returned never sees a lower revision, and a write
// invoked after another op returned gets a higher one.
func checkRevisions(in Input) Result {
	r := Result{Name: "revisions"}
	var ok []history.Op
	for _, o := range in.History.Ops {
		if o.OK {
			ok = append(ok, o)
		}
	}
	d := RevisionDetails{Checked: len(ok)}
	bad := func(f string, a ...any) {
		d.Violations++
		if len(d.Examples) < 5 {
			d.Examples = append(d.Examples, fmt.Sprintf(f, a...))
		}
	}
	byRev := map[int64]history.Op{}
	for _, o := range ok {
		if o.Kind == history.KindGet && o.Found && o.GotModRev > o.Revision {
			bad("client %d's get of %s returned mod revision %d above its header revision %d", o.Client, o.Key, o.GotModRev, o.Revision)
		}
		if !effective(o) {
			continue
		}
		d.AckedWrites++
		if p, dup := byRev[o.Revision]; dup {
			bad("revision %d acknowledged twice: client %d's %s of %s and client %d's %s of %s", o.Revision, p.Client, p.Kind, p.Key, o.Client, o.Kind, o.Key)
		}
		byRev[o.Revision] = o
	}
	// Sweep in call order, folding in everything that returned before.
	byReturn := append([]history.Op(nil), ok...)
	sort.Slice(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	byCall := append([]history.Op(nil), ok...)
	sort.Slice(byCall, func(i, j int) bool { return byCall[i].Call < byCall[j].Call })
	var maxRev int64
	var maxOp history.Op
	j := 0
	for _, b := range byCall {
		for ; j < len(byReturn) && byReturn[j].Return < b.Call; j++ {
			if byReturn[j].Revision > maxRev {
				maxRev, maxOp = byReturn[j].Revision, byReturn[j]
			}
		}
		switch {
		case effective(b) && b.Revision <= maxRev:
			bad("client %d's %s of %s got revision %d, not above revision %d that client %d's %s of %s saw %s before it was invoked",
				b.Client, b.Kind, b.Key, b.Revision, maxRev, maxOp.Client, maxOp.Kind, maxOp.Key, time.Duration(b.Call-maxOp.Return).Round(time.Microsecond))
		case b.Revision < maxRev:
			bad("client %d's %s of %s via %s saw revision %d, below revision %d that client %d's %s of %s saw %s before it was invoked",
				b.Client, b.Kind, b.Key, b.Endpoint, b.Revision, maxRev, maxOp.Client, maxOp.Kind, maxOp.Key, time.Duration(b.Call-maxOp.Return).Round(time.Microsecond))
		}
	}
	r.Details = d
	if d.Violations > 0 {
		r.Evidence = fmt.Sprintf("%d revision violations; first: %s", d.Violations, strings.Join(d.Examples, "; "))
		return r
	}
	r.Pass = true
	r.Evidence = fmt.Sprintf("%d acknowledged writes with distinct revisions; revisions of %d ops never go back in real time", d.AckedWrites, d.Checked)
	return r
}

// effective reports whether an acknowledged op changed the store (and so
// created a revision).
func effective(o history.Op) bool {
	if !o.OK {
		return false
	}
	switch o.Kind {
	case history.KindPut:
		return true
	case history.KindCAS:
		return o.Succeeded
	case history.KindDelete:
		return o.Found
	}
	return false
}
