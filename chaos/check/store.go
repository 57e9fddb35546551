package check

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"synod/chaos/history"
)

// MemberData is what one master holds after the run: its own replay of the
// workload's key prefix (a watch from the first revision, served from its
// local store) up to a final sentinel write, and its data and hash at the
// sentinel's revision.
type MemberData struct {
	Name     string               `json:"name"`
	Endpoint string               `json:"endpoint"`
	Err      string               `json:"err,omitempty"`
	Events   []history.WatchEvent `json:"-"`
	Final    map[string]KV        `json:"-"`
	// Revision is the sentinel write's revision: Events and Final are up to it.
	Revision int64  `json:"revision"`
	Hash     uint32 `json:"hash,omitempty"`
	HashErr  string `json:"hash_err,omitempty"`
	// ReplayErr is set when the replay was impossible (e.g. compacted);
	// the checks then use Final only.
	ReplayErr string `json:"replay_err,omitempty"`
}

// KV is one key's final value.
type KV struct {
	Value  string `json:"value"`
	ModRev int64  `json:"mod_rev"`
}

// sentinelKey is the final write that marks the end of the replay.
func sentinelKey(prefix string) string {
	return fmt.Sprintf("%s~end/%d", prefix, time.Now().UnixNano())
}

func isSentinel(prefix, key string) bool { return strings.HasPrefix(key, prefix+"~end/") }

// collectMembers writes a sentinel key (which must succeed: the healed
// cluster accepts writes) and reads every member's data up to it.
func collectMembers(ctx context.Context, in Input) ([]MemberData, string, error) {
	prefix := in.History.KeyPrefix
	clients := make([]*clientv3.Client, len(in.Masters))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i, m := range in.Masters {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint}, Logger: zap.NewNop(), TLS: in.EtcdTLS})
		if err != nil {
			return nil, "", fmt.Errorf("client for %s: %w", m.Name, err)
		}
		clients[i] = c
	}
	sentinel := sentinelKey(prefix)
	var rev int64
	var lastErr error
	deadline := time.Now().Add(in.SettleTimeout)
	for rev == 0 && time.Now().Before(deadline) {
		for i, c := range clients {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			resp, err := c.Put(rctx, sentinel, "end")
			cancel()
			if err == nil {
				rev = resp.Header.Revision
				break
			}
			lastErr = fmt.Errorf("%s: %w", in.Masters[i].Name, err)
		}
		if rev == 0 {
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return nil, sentinel, err
			}
		}
	}
	if rev == 0 {
		return nil, sentinel, fmt.Errorf("the cluster accepted no write within %s after the run: %w", in.SettleTimeout, lastErr)
	}
	out := make([]MemberData, len(in.Masters))
	for i, m := range in.Masters {
		out[i] = readMember(ctx, clients[i], m, prefix, sentinel, in.History.StartRev, rev, deadline)
	}
	return out, sentinel, nil
}

// readMember reads one member's replay, data and hash at rev, waiting (up
// to deadline) for it to catch up.
func readMember(ctx context.Context, c *clientv3.Client, m MasterState, prefix, sentinel string, startRev, rev int64, deadline time.Time) MemberData {
	d := MemberData{Name: m.Name, Endpoint: m.Endpoint, Revision: rev}
	// Wait until the member has applied rev (serializable reads are local).
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := c.Get(rctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithSerializable())
		cancel()
		if err == nil {
			d.Final = map[string]KV{}
			for _, kv := range resp.Kvs {
				if !isSentinel(prefix, string(kv.Key)) {
					d.Final[string(kv.Key)] = KV{Value: string(kv.Value), ModRev: kv.ModRevision}
				}
			}
			d.Err = ""
			break
		}
		d.Err = err.Error()
		if time.Now().After(deadline) || sleepCtx(ctx, 200*time.Millisecond) != nil {
			return d
		}
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	h, err := c.HashKV(hctx, m.Endpoint, rev)
	cancel()
	if err != nil {
		d.HashErr = err.Error()
	} else {
		d.Hash = h.Hash
	}
	// The replay: a watch from the first workload revision is served from
	// the member's own store; the sentinel event ends it.
	wctx, wcancel := context.WithTimeout(ctx, time.Until(deadline)+10*time.Second)
	defer wcancel()
	for resp := range c.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(startRev+1)) {
		if resp.CompactRevision > 0 {
			d.ReplayErr = fmt.Sprintf("compacted at revision %d", resp.CompactRevision)
			return d
		}
		if err := resp.Err(); err != nil {
			d.ReplayErr = err.Error()
			return d
		}
		for _, ev := range resp.Events {
			if string(ev.Kv.Key) == sentinel {
				return d
			}
			if isSentinel(prefix, string(ev.Kv.Key)) {
				continue // an earlier check run's
			}
			d.Events = append(d.Events, history.WatchEvent{Key: string(ev.Kv.Key), Type: ev.Type.String(),
				Value: string(ev.Kv.Value), ModRev: ev.Kv.ModRevision, Revision: resp.Header.Revision})
		}
	}
	d.ReplayErr = "replay ended before the sentinel: " + fmt.Sprint(wctx.Err())
	return d
}

// writeString is "put of KEY=VALUE" or "delete of KEY".
func writeString(w history.Op) string {
	if w.Kind == history.KindDelete {
		return "delete of " + w.Key
	}
	return fmt.Sprintf("%s of %s=%q", w.Kind, w.Key, w.Value)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// writeIndex maps the history's writes for matching store events to them:
// values are unique per write, so a PUT event names its write.
type writeIndex struct {
	byValue   map[string]history.Op   // put/cas value -> op
	deletes   map[string][]history.Op // key -> delete ops
	effective []history.Op            // acknowledged writes that created a revision
}

func indexWrites(ops []history.Op) writeIndex {
	ix := writeIndex{byValue: map[string]history.Op{}, deletes: map[string][]history.Op{}}
	for _, o := range ops {
		if !o.IsWrite() || (!o.OK && !o.Unknown) {
			continue
		}
		if o.Kind == history.KindDelete {
			ix.deletes[o.Key] = append(ix.deletes[o.Key], o)
		} else {
			ix.byValue[o.Value] = o
		}
		if effective(o) {
			ix.effective = append(ix.effective, o)
		}
	}
	sort.Slice(ix.effective, func(i, j int) bool { return ix.effective[i].Revision < ix.effective[j].Revision })
	return ix
}

// explainEvent says what is wrong with a store event (a PUT or DELETE of a
// workload key at a revision), or "" when a write of the history explains it.
func (ix writeIndex) explainEvent(e history.WatchEvent) string {
	if e.Type == "DELETE" {
		for _, d := range ix.deletes[e.Key] {
			if d.Unknown || (d.Found && d.Revision == e.ModRev) {
				return ""
			}
		}
		return fmt.Sprintf("DELETE of %s at revision %d that no delete of the history explains", e.Key, e.ModRev)
	}
	o, ok := ix.byValue[e.Value]
	switch {
	case !ok:
		return fmt.Sprintf("PUT of %s=%q at revision %d that no write of the history made", e.Key, e.Value, e.ModRev)
	case o.Key != e.Key:
		return fmt.Sprintf("PUT of %s=%q at revision %d, but that value was written to %s", e.Key, e.Value, e.ModRev, o.Key)
	case o.OK && !effective(o):
		return fmt.Sprintf("PUT of %s=%q at revision %d by client %d's %s that was acknowledged as not applied", e.Key, e.Value, e.ModRev, o.Client, o.Kind)
	case o.OK && o.Revision != e.ModRev:
		return fmt.Sprintf("PUT of %s=%q at revision %d, but client %d's %s was acknowledged at revision %d", e.Key, e.Value, e.ModRev, o.Client, o.Kind, o.Revision)
	}
	return ""
}

// StoreDetails are the figures of the lost-write and convergence checks.
type StoreDetails struct {
	Members     []MemberData `json:"members"`
	AckedWrites int          `json:"acked_writes"`
	Replayed    int          `json:"events_replayed"`
	Problems    []string     `json:"problems,omitempty"`
}

// checkLostWrites: every acknowledged write is in every member's history
// at its revision (and nothing else is), and every key's final value is
// explained by the last acknowledged write or a later one.
func checkLostWrites(h *history.History, members []MemberData) Result {
	r := Result{Name: "no-lost-writes"}
	ix := indexWrites(h.Ops)
	d := StoreDetails{Members: members, AckedWrites: len(ix.effective)}
	var problems []string
	problem := func(f string, a ...any) {
		if len(problems) < 10000 {
			problems = append(problems, fmt.Sprintf(f, a...))
		}
	}
	nProblems := 0
	for _, m := range members {
		if m.Final == nil {
			nProblems++
			problem("%s: no final read: %s", m.Name, m.Err)
			continue
		}
		if m.ReplayErr == "" {
			d.Replayed += len(m.Events)
			byRev := map[int64]history.WatchEvent{}
			byValue := map[string]history.WatchEvent{}
			seen := map[string]int64{}
			for _, e := range m.Events {
				if why := ix.explainEvent(e); why != "" {
					nProblems++
					problem("%s: %s", m.Name, why)
				}
				if e.Type != "DELETE" {
					if prev, dup := seen[e.Value]; dup {
						nProblems++
						problem("%s: value %q of %s applied twice, at revisions %d and %d", m.Name, e.Value, e.Key, prev, e.ModRev)
					}
					seen[e.Value] = e.ModRev
					byValue[e.Value] = e
				}
				byRev[e.ModRev] = e
			}
			for _, w := range ix.effective {
				if w.Kind == history.KindDelete {
					if e, ok := byRev[w.Revision]; !ok || e.Type != "DELETE" || e.Key != w.Key {
						nProblems++
						problem("%s: LOST: client %d's acknowledged %s at revision %d (via %s, returned %s) is not in its history",
							m.Name, w.Client, writeString(w), w.Revision, w.Endpoint, stamp(w.Return))
					}
					continue
				}
				e, ok := byValue[w.Value]
				switch {
				case !ok:
					nProblems++
					problem("%s: LOST: client %d's acknowledged %s at revision %d (via %s, returned %s) was never applied",
						m.Name, w.Client, writeString(w), w.Revision, w.Endpoint, stamp(w.Return))
				case e.ModRev != w.Revision:
					nProblems++
					problem("%s: client %d's %s was acknowledged at revision %d but applied at revision %d",
						m.Name, w.Client, writeString(w), w.Revision, e.ModRev)
				}
			}
		}
		for _, p := range finalStateProblems(h, ix, m) {
			nProblems++
			problem("%s", p)
		}
	}
	// Lost writes first: they are the verdict; the rest is context.
	sort.SliceStable(problems, func(i, j int) bool {
		return strings.Contains(problems[i], "LOST") && !strings.Contains(problems[j], "LOST")
	})
	d.Problems = problems[:min(len(problems), 50)]
	r.Details = d
	if nProblems > 0 {
		lost := 0
		for _, p := range problems {
			if strings.Contains(p, "LOST") {
				lost++
			}
		}
		r.Evidence = fmt.Sprintf("%d problems (%d lost writes); first: %s", nProblems, lost, strings.Join(problems[:min(len(problems), 5)], "; "))
		return r
	}
	replay := fmt.Sprintf("%d store events replayed from %d members all explained by the history", d.Replayed, len(members))
	for _, m := range members {
		if m.ReplayErr != "" {
			replay = fmt.Sprintf("replay unavailable on %s (%s): final state only", m.Name, m.ReplayErr)
		}
	}
	r.Pass = true
	r.Evidence = fmt.Sprintf("all %d acknowledged writes present on every member; %s", d.AckedWrites, replay)
	return r
}

// finalStateProblems checks one member's final value of every key against
// the acknowledged writes: the key's last acknowledged write (the highest
// revision) or a later one must be what is there.
func finalStateProblems(h *history.History, ix writeIndex, m MemberData) []string {
	var out []string
	last := map[string]history.Op{}
	for _, w := range ix.effective {
		last[w.Key] = w // ascending revisions: the last one wins
	}
	keys := map[string]bool{}
	for k := range last {
		keys[k] = true
	}
	for k := range m.Final {
		keys[k] = true
	}
	for k := range keys {
		w, acked := last[k]
		kv, present := m.Final[k]
		switch {
		case present && acked && kv.ModRev < w.Revision:
			out = append(out, fmt.Sprintf("%s: LOST: %s=%q at mod revision %d, older than client %d's acknowledged %s at revision %d",
				m.Name, k, kv.Value, kv.ModRev, w.Client, w.Kind, w.Revision))
		case present:
			if why := ix.explainEvent(history.WatchEvent{Key: k, Type: "PUT", Value: kv.Value, ModRev: kv.ModRev}); why != "" {
				out = append(out, fmt.Sprintf("%s: final %s", m.Name, why))
			}
		case acked && w.Kind != history.KindDelete:
			// Absent: only a delete that may have come later explains it.
			explained := false
			for _, d := range ix.deletes[k] {
				if d.Unknown || d.Revision > w.Revision {
					explained = true
				}
			}
			if !explained {
				out = append(out, fmt.Sprintf("%s: LOST: %s is absent, but client %d's %s of %q at revision %d was acknowledged and no later delete explains it",
					m.Name, k, w.Client, w.Kind, w.Value, w.Revision))
			}
		}
	}
	sort.Strings(out)
	return out
}

// checkConvergence: every member has the same history, data and hash at
// the final revision.
func checkConvergence(members []MemberData) Result {
	r := Result{Name: "convergence"}
	type summary struct {
		Name     string `json:"name"`
		Keys     int    `json:"keys"`
		Events   int    `json:"events"`
		Hash     uint32 `json:"hash"`
		Revision int64  `json:"revision"`
	}
	var sums []summary
	var problems []string
	if len(members) == 0 {
		r.Evidence = "no members to compare"
		return r
	}
	ref := members[0]
	for _, m := range members {
		sums = append(sums, summary{m.Name, len(m.Final), len(m.Events), m.Hash, m.Revision})
		if m.Final == nil {
			problems = append(problems, fmt.Sprintf("%s unreadable at revision %d: %s", m.Name, m.Revision, m.Err))
			continue
		}
		if m.HashErr != "" {
			problems = append(problems, fmt.Sprintf("%s: HashKV at revision %d failed: %s", m.Name, m.Revision, m.HashErr))
		} else if ref.HashErr == "" && m.Hash != ref.Hash {
			problems = append(problems, fmt.Sprintf("HashKV at revision %d: %s has %08x, %s has %08x", m.Revision, ref.Name, ref.Hash, m.Name, m.Hash))
		}
		if ref.Final != nil {
			if diff := diffFinal(ref.Final, m.Final); diff != "" {
				problems = append(problems, fmt.Sprintf("data at revision %d differs between %s and %s: %s", m.Revision, ref.Name, m.Name, diff))
			}
		}
		if ref.ReplayErr == "" && m.ReplayErr == "" {
			if diff := diffEvents(ref.Events, m.Events); diff != "" {
				problems = append(problems, fmt.Sprintf("history differs between %s and %s: %s", ref.Name, m.Name, diff))
			}
		}
	}
	r.Details = sums
	if len(problems) > 0 {
		r.Evidence = strings.Join(problems, "; ")
		return r
	}
	r.Pass = true
	r.Evidence = fmt.Sprintf("%d members agree at revision %d: hash %08x, %d keys, %d workload events in the same order",
		len(members), ref.Revision, ref.Hash, len(ref.Final), len(ref.Events))
	return r
}

func diffFinal(a, b map[string]KV) string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		x, okA := a[k]
		y, okB := b[k]
		if okA != okB || x != y {
			return fmt.Sprintf("%s: %s vs %s", k, kvString(x, okA), kvString(y, okB))
		}
	}
	return ""
}

func kvString(kv KV, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%q@%d", kv.Value, kv.ModRev)
}

func diffEvents(a, b []history.WatchEvent) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if x.Key != y.Key || x.Type != y.Type || x.Value != y.Value || x.ModRev != y.ModRev {
			return fmt.Sprintf("event %d: %s %s=%q@%d vs %s %s=%q@%d", i, x.Type, x.Key, x.Value, x.ModRev, y.Type, y.Key, y.Value, y.ModRev)
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d vs %d events", len(a), len(b))
	}
	return ""
}
