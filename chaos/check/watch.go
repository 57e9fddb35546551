package check

import (
	"fmt"
	"sort"
	"strings"

	"synod/chaos/history"
)

// WatchDetails are the figures of the watch check, per watcher.
type WatchDetails struct {
	Watcher  int      `json:"watcher"`
	All      bool     `json:"all_keys,omitempty"`
	Events   int      `json:"events"`
	Resumes  int      `json:"resumes"`
	StartRev int64    `json:"start_rev"`
	LastRev  int64    `json:"last_rev"`
	Expected int      `json:"acked_writes_in_range"`
	Problems []string `json:"problems,omitempty"`
}

// checkWatches: per watcher, events are ordered by revision with no
// duplicates and no gaps, every resume asked for the last revision + 1, and
// the events are the store's (from a member's replay when there is one,
// else the acknowledged writes). A watcher of the whole keyspace must see
// every revision.
func checkWatches(h *history.History, replay []history.WatchEvent) Result {
	r := Result{Name: "watches"}
	if len(h.Watchers) == 0 {
		r.Pass = true
		r.Evidence = "no watchers"
		return r
	}
	ix := indexWrites(h.Ops)
	events := map[int][]history.WatchEvent{}
	for _, e := range h.Watches {
		events[e.Watcher] = append(events[e.Watcher], e)
	}
	resumes := map[int][]history.WatchResume{}
	for _, rs := range h.WatchResumes {
		resumes[rs.Watcher] = append(resumes[rs.Watcher], rs)
	}
	var all []WatchDetails
	total, nProblems, totalEvents, totalResumes := 0, 0, 0, 0
	var first []string
	for _, wt := range h.Watchers {
		d := watcherProblems(h, wt, events[wt.Watcher], resumes[wt.Watcher], ix, replay)
		all = append(all, d)
		total++
		totalEvents += d.Events
		totalResumes += d.Resumes
		nProblems += len(d.Problems)
		for _, p := range d.Problems {
			if len(first) < 8 {
				first = append(first, fmt.Sprintf("watcher %d: %s", wt.Watcher, p))
			}
		}
	}
	r.Details = all
	if nProblems > 0 {
		r.Evidence = fmt.Sprintf("%d problems; first: %s", nProblems, strings.Join(first, "; "))
		return r
	}
	r.Pass = true
	src := "the acknowledged writes"
	if replay != nil {
		src = "a member's replay of the store"
	}
	r.Evidence = fmt.Sprintf("%d watchers, %d events, %d resumes from last revision + 1: ordered, no duplicates, no gaps against %s", total, totalEvents, totalResumes, src)
	return r
}

func watcherProblems(h *history.History, wt history.Watcher, evs []history.WatchEvent, rs []history.WatchResume, ix writeIndex, replay []history.WatchEvent) WatchDetails {
	d := WatchDetails{Watcher: wt.Watcher, All: wt.All, Events: len(evs), Resumes: len(rs), StartRev: wt.StartRev, LastRev: wt.LastRev}
	const maxProblems = 20
	bad := func(f string, a ...any) {
		if len(d.Problems) < maxProblems {
			d.Problems = append(d.Problems, fmt.Sprintf(f, a...))
		}
	}
	// Compactions excuse the gap before the revision the watch restarted at.
	excused := map[int64]int64{} // restart revision -> asked-for revision
	for _, r := range rs {
		if r.Compacted {
			excused[r.CompactRev] = r.FromRev
		}
	}
	// Order, duplicates and (for a whole-keyspace watcher) contiguity.
	type evKey struct {
		key string
		rev int64
	}
	seen := map[evKey]bool{}
	prev := wt.StartRev - 1
	for _, e := range evs {
		k := evKey{e.Key, e.ModRev}
		switch {
		case seen[k]:
			bad("DUPLICATE: %s %s at revision %d delivered twice", e.Type, e.Key, e.ModRev)
			continue
		case e.ModRev < prev:
			bad("OUT OF ORDER: %s %s at revision %d after revision %d", e.Type, e.Key, e.ModRev, prev)
		case e.ModRev < wt.StartRev:
			bad("event at revision %d before the watch's start revision %d", e.ModRev, wt.StartRev)
		case wt.All && e.ModRev > prev+1:
			if _, ok := excused[e.ModRev]; !ok {
				bad("GAP: revisions %d..%d missing (a whole-keyspace watch sees every revision)", prev+1, e.ModRev-1)
			}
		}
		seen[k] = true
		if e.ModRev > prev {
			prev = e.ModRev
		}
	}
	if wt.LastRev < prev {
		wt.LastRev = prev
		d.LastRev = prev
	}
	// Resumes: each asked for exactly the last revision received + 1.
	ri, last := 0, wt.StartRev-1
	sortedRs := append([]history.WatchResume(nil), rs...)
	sort.SliceStable(sortedRs, func(i, j int) bool { return sortedRs[i].At < sortedRs[j].At })
	for _, e := range evs {
		for ri < len(sortedRs) && sortedRs[ri].At <= e.At {
			if sortedRs[ri].FromRev != last+1 {
				bad("resume at %s asked for revision %d, but the last revision received was %d", stamp(sortedRs[ri].At), sortedRs[ri].FromRev, last)
			}
			ri++
		}
		if e.ModRev > last {
			last = e.ModRev
		}
	}
	for ; ri < len(sortedRs); ri++ {
		if sortedRs[ri].FromRev != last+1 {
			bad("resume at %s asked for revision %d, but the last revision received was %d", stamp(sortedRs[ri].At), sortedRs[ri].FromRev, last)
		}
	}
	// The workload-prefix events must be exactly the store's in
	// [StartRev, LastRev].
	got := map[int64]history.WatchEvent{}
	for _, e := range evs {
		if strings.HasPrefix(e.Key, h.KeyPrefix) && !isSentinel(h.KeyPrefix, e.Key) {
			got[e.ModRev] = e
			if why := ix.explainEvent(e); why != "" {
				bad("event not in the history: %s", why)
			}
		}
	}
	inRange := func(rev int64) bool {
		if rev < wt.StartRev || rev > wt.LastRev {
			return false
		}
		for restart, asked := range excused {
			if rev >= asked && rev < restart {
				return false
			}
		}
		return true
	}
	if replay != nil {
		for _, e := range replay {
			if !inRange(e.ModRev) {
				continue
			}
			d.Expected++
			g, ok := got[e.ModRev]
			switch {
			case !ok:
				bad("GAP: missed %s %s=%q at revision %d", e.Type, e.Key, e.Value, e.ModRev)
			case g.Key != e.Key || g.Type != e.Type || g.Value != e.Value:
				bad("revision %d: got %s %s=%q, the store has %s %s=%q", e.ModRev, g.Type, g.Key, g.Value, e.Type, e.Key, e.Value)
			}
		}
	} else {
		for _, w := range ix.effective {
			if !inRange(w.Revision) {
				continue
			}
			d.Expected++
			if _, ok := got[w.Revision]; !ok {
				bad("GAP: missed client %d's acknowledged %s of %s at revision %d", w.Client, w.Kind, w.Key, w.Revision)
			}
		}
	}
	return d
}
