package check

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"synod/chaos/history"
)

// Hand-made histories: times are in ms from t0, revisions start after 1.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ms(n int) int64 { return t0.Add(time.Duration(n) * time.Millisecond).UnixNano() }

const pfx = "/chaos/test/"

func put(client int, key, val string, call, ret int, rev int64) history.Op {
	return history.Op{Client: client, Kind: history.KindPut, Key: pfx + key, Value: val, Call: ms(call), Return: ms(ret), OK: true, Revision: rev}
}

func unknownPut(client int, key, val string, call int) history.Op {
	return history.Op{Client: client, Kind: history.KindPut, Key: pfx + key, Value: val, Call: ms(call), Return: history.Unknown, Unknown: true, Err: "context deadline exceeded"}
}

func get(client int, key string, call, ret int, rev int64, val string, modRev int64) history.Op {
	return history.Op{Client: client, Kind: history.KindGet, Key: pfx + key, Call: ms(call), Return: ms(ret), OK: true, Revision: rev,
		Found: modRev != 0, GotValue: val, GotModRev: modRev}
}

func cas(client int, key, val string, expect int64, call, ret int, rev int64, ok bool) history.Op {
	return history.Op{Client: client, Kind: history.KindCAS, Key: pfx + key, Value: val, ExpectModRev: expect, Call: ms(call), Return: ms(ret),
		OK: true, Revision: rev, Succeeded: ok}
}

func del(client int, key string, call, ret int, rev int64, found bool) history.Op {
	return history.Op{Client: client, Kind: history.KindDelete, Key: pfx + key, Call: ms(call), Return: ms(ret), OK: true, Revision: rev, Found: found}
}

// goodOps is a linearizable history over two keys with concurrency, a
// compare-and-swap that wins and one that loses, a delete, and two writes
// of unknown outcome (one later observed, one never).
func goodOps() []history.Op {
	return []history.Op{
		put(0, "a", "0.1", 0, 10, 2),
		get(1, "a", 5, 12, 2, "0.1", 2), // concurrent with the put: sees it
		put(2, "b", "2.1", 11, 20, 3),
		cas(0, "a", "0.2", 2, 21, 30, 4, true),
		cas(1, "a", "1.2", 2, 22, 31, 4, false), // lost the race
		get(2, "b", 25, 32, 4, "2.1", 3),
		unknownPut(1, "a", "1.3", 40), // applied at revision 5, seen below
		get(0, "a", 60, 70, 5, "1.3", 5),
		del(2, "b", 71, 80, 6, true),
		get(1, "b", 81, 90, 6, "", 0),
		unknownPut(2, "b", "2.9", 95), // never seen: may not have happened
		get(0, "b", 100, 110, 6, "", 0),
		{Client: 1, Kind: history.KindGet, Key: pfx + "a", Call: ms(100), Return: ms(150), Err: "timeout"}, // failed read: dropped
	}
}

func goodMembers() []MemberData {
	final := map[string]KV{pfx + "a": {Value: "1.3", ModRev: 5}}
	events := []history.WatchEvent{
		{Key: pfx + "a", Type: "PUT", Value: "0.1", ModRev: 2},
		{Key: pfx + "b", Type: "PUT", Value: "2.1", ModRev: 3},
		{Key: pfx + "a", Type: "PUT", Value: "0.2", ModRev: 4},
		{Key: pfx + "a", Type: "PUT", Value: "1.3", ModRev: 5},
		{Key: pfx + "b", Type: "DELETE", ModRev: 6},
	}
	var out []MemberData
	for _, n := range []string{"m1", "m2", "m3"} {
		out = append(out, MemberData{Name: n, Revision: 7, Final: final, Events: events, Hash: 42})
	}
	return out
}

func goodHistory() *history.History {
	h := &history.History{KeyPrefix: pfx, StartRev: 1, Ops: goodOps()}
	h.Watchers = []history.Watcher{{Watcher: 0, Prefix: pfx, StartRev: 2, LastRev: 6}, {Watcher: 1, Prefix: pfx, All: true, StartRev: 2, LastRev: 6}}
	for _, w := range []int{0, 1} {
		for i, e := range goodMembers()[0].Events {
			e.Watcher, e.At = w, ms(10*i+5)
			h.Watches = append(h.Watches, e)
		}
	}
	return h
}

func mustPass(t *testing.T, r Result) {
	t.Helper()
	if !r.Pass {
		t.Errorf("%s failed: %s", r.Name, r.Evidence)
	} else {
		t.Logf("%s: %s", r.Name, r.Evidence)
	}
}

func mustFail(t *testing.T, r Result, evidence ...string) {
	t.Helper()
	if r.Pass {
		t.Errorf("%s passed, want a failure: %s", r.Name, r.Evidence)
		return
	}
	for _, e := range evidence {
		if !strings.Contains(r.Evidence, e) {
			t.Errorf("%s evidence lacks %q: %s", r.Name, e, r.Evidence)
		}
	}
	t.Logf("%s failed as it should: %s", r.Name, r.Evidence)
}

func TestGoodHistoryPasses(t *testing.T) {
	h := goodHistory()
	in := Input{History: h, LinearizabilityTimeout: 10 * time.Second}
	mustPass(t, checkLinearizability(in))
	mustPass(t, checkRevisions(in))
	mustPass(t, checkLostWrites(h, goodMembers()))
	mustPass(t, checkConvergence(goodMembers()))
	mustPass(t, checkWatches(h, goodMembers()[0].Events))
	mustPass(t, checkWatches(h, nil))
}

func TestStaleReadFails(t *testing.T) {
	ops := goodOps()
	// Acknowledged at 30 (revision 4), then a read from 32 returns the
	// value of revision 2: stale.
	ops = append(ops, get(3, "a", 32, 35, 3, "0.1", 2))
	h := &history.History{KeyPrefix: pfx, Ops: ops}
	dir := t.TempDir()
	r := checkLinearizability(Input{History: h, ReportDir: dir, LinearizabilityTimeout: 10 * time.Second,
		Faults: []Fault{{Kind: "pause", Target: "m2", Start: t0, End: t0.Add(50 * time.Millisecond)}}})
	mustFail(t, r, "NOT linearizable", pfx+"a", "stale read", `"0.1"`)
	if _, err := os.Stat(filepath.Join(dir, "linearizability.html")); err != nil {
		t.Errorf("no visualization: %v", err)
	}
	mustFail(t, checkRevisions(Input{History: h}), "saw revision 3, below revision 4")
}

func TestLostUpdateFailsLinearizability(t *testing.T) {
	// Both compare-and-swaps on the same mod revision succeed.
	ops := []history.Op{
		put(0, "a", "0.1", 0, 10, 2),
		cas(1, "a", "1.1", 2, 20, 30, 3, true),
		cas(2, "a", "2.1", 2, 31, 40, 4, true),
	}
	mustFail(t, checkLinearizability(Input{History: &history.History{Ops: ops}, LinearizabilityTimeout: 10 * time.Second}), "NOT linearizable", "lost update")
}

func TestUnknownWriteNeverSeenPasses(t *testing.T) {
	ops := []history.Op{
		put(0, "a", "0.1", 0, 10, 2),
		unknownPut(1, "a", "1.1", 11),
		get(0, "a", 20, 30, 2, "0.1", 2), // it did not happen (yet)
		get(0, "a", 40, 50, 3, "1.1", 3), // now it did
		get(2, "a", 60, 70, 3, "1.1", 3),
	}
	mustPass(t, checkLinearizability(Input{History: &history.History{Ops: ops}, LinearizabilityTimeout: 10 * time.Second}))
	// But it cannot un-happen.
	ops = append(ops, get(0, "a", 80, 90, 3, "0.1", 2))
	mustFail(t, checkLinearizability(Input{History: &history.History{Ops: ops}, LinearizabilityTimeout: 10 * time.Second}), "NOT linearizable")
}

func TestRevisionGoingBackFails(t *testing.T) {
	// Two keys, each fine on its own; across keys, the second write got a
	// lower revision than the first although it started after it returned.
	ops := []history.Op{put(0, "a", "0.1", 0, 10, 5), put(1, "b", "1.1", 20, 30, 4)}
	in := Input{History: &history.History{Ops: ops}, LinearizabilityTimeout: 10 * time.Second}
	mustPass(t, checkLinearizability(in))
	mustFail(t, checkRevisions(in), "got revision 4, not above revision 5")
	dup := []history.Op{put(0, "a", "0.1", 0, 10, 5), put(1, "b", "1.1", 5, 30, 5)}
	mustFail(t, checkRevisions(Input{History: &history.History{Ops: dup}}), "revision 5 acknowledged twice")
}

func TestLostWriteFails(t *testing.T) {
	h := goodHistory()
	// m3 lost the acknowledged delete at revision 6: its history stops
	// at 5 and b is still there.
	ms := goodMembers()
	ms[2].Events = ms[2].Events[:4]
	ms[2].Final = map[string]KV{pfx + "a": {Value: "1.3", ModRev: 5}, pfx + "b": {Value: "2.1", ModRev: 3}}
	ms[2].Hash = 7
	mustFail(t, checkLostWrites(h, ms), "m3: LOST: client 2's acknowledged delete of "+pfx+"b at revision 6")
	mustFail(t, checkConvergence(ms), "HashKV", "differs between m1 and m3")

	// An acknowledged put lost everywhere: the final value is older.
	h.Ops = append(h.Ops, put(3, "a", "3.1", 200, 210, 7))
	mustFail(t, checkLostWrites(h, goodMembers()), `m1: LOST: client 3's acknowledged put of `+pfx+`a="3.1" at revision 7`)

	// Without replays, the final state alone still shows it.
	for i := range ms {
		ms[i].Events, ms[i].ReplayErr = nil, "compacted"
	}
	mustFail(t, checkLostWrites(h, ms), "m3: LOST")
}

func TestPhantomAndDoubleApplyFail(t *testing.T) {
	h := goodHistory()
	ms := goodMembers()
	ms[0].Events = append(append([]history.WatchEvent(nil), ms[0].Events...),
		history.WatchEvent{Key: pfx + "b", Type: "PUT", Value: "9.9", ModRev: 7},
		history.WatchEvent{Key: pfx + "a", Type: "PUT", Value: "0.1", ModRev: 8})
	mustFail(t, checkLostWrites(h, ms), "no write of the history made", "applied twice")
}

func TestWatchGapDuplicateAndBadResumeFail(t *testing.T) {
	h := goodHistory()
	replay := goodMembers()[0].Events
	var evs []history.WatchEvent
	for _, e := range h.Watches {
		switch {
		case e.Watcher == 0 && e.ModRev == 4:
			continue // a gap
		case e.Watcher == 1 && e.ModRev == 3:
			evs = append(evs, e, e) // a duplicate
			continue
		}
		evs = append(evs, e)
	}
	h.Watches = evs
	// Watcher 1 resumed from the wrong revision after revision 3.
	h.WatchResumes = []history.WatchResume{{Watcher: 1, FromRev: 3, At: ms(21), Reason: "no leader"}}
	r := checkWatches(h, replay)
	mustFail(t, r, "watcher 0: GAP: missed PUT "+pfx+"a=\"0.2\" at revision 4", "watcher 1: DUPLICATE", "asked for revision 3, but the last revision received was 3")
	mustFail(t, checkWatches(h, nil), "GAP: missed client 0's acknowledged cas")

	// A whole-keyspace watcher sees every revision, workload's or not.
	h = goodHistory()
	var all []history.WatchEvent
	for _, e := range h.Watches {
		if e.Watcher != 1 || e.ModRev != 5 {
			all = append(all, e)
		}
	}
	h.Watches = all
	mustFail(t, checkWatches(h, nil), "watcher 1: GAP: revisions 5..5 missing")
}

func TestWatchResumeFromLastPlusOnePasses(t *testing.T) {
	h := goodHistory()
	h.WatchResumes = []history.WatchResume{{Watcher: 0, FromRev: 4, At: ms(21), Reason: "no leader"}}
	mustPass(t, checkWatches(h, goodMembers()[0].Events))
}

// writeLog writes slog text lines like the leader package's.
func writeLog(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, name+".log")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func at(s int) string { return t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano) }

func acquired(comp, id string, s int) string {
	return `time=` + at(s) + ` level=INFO msg="leadership acquired; component active" name=m component=` + comp +
		` lease=kube-system/` + comp + ` identity=` + id + ` at=` + at(s)
}

func stopped(comp, id string, s, until int) string {
	return `time=` + at(s) + ` level=INFO msg="leadership lost or given up; component stopped" name=m component=` + comp +
		` lease=kube-system/` + comp + ` identity=` + id + ` at=` + at(s) + ` held=1s active_until=` + at(until)
}

func starting(s int) string {
	return `time=` + at(s) + ` level=INFO msg="starting master" name=m data-dir=/x`
}

func TestOverlappingLeadersFail(t *testing.T) {
	dir := t.TempDir()
	const sched = SchedulerLease
	// m1 holds the scheduler from 10s; it is paused at 20s and thawed at
	// 40s, when it logs its stop with its fence at 25s; m2 took over at
	// 30s. m1's controller-manager term is SIGKILLed at 50s (no stop
	// record) and m2's starts at 55s. All legitimate.
	ms := []MasterState{
		{Name: "m1", LogPath: writeLog(t, dir, "m1", starting(0), acquired(sched, "m1_1", 10), acquired(ControllerManagerLease, "m1_1", 11),
			stopped(sched, "m1_1", 40, 25), starting(60))},
		{Name: "m2", LogPath: writeLog(t, dir, "m2", starting(0), acquired(sched, "m2_2", 30), acquired(ControllerManagerLease, "m2_2", 55))},
	}
	faults := []Fault{{Kind: "pause", Target: "m1", Start: t0.Add(20 * time.Second), End: t0.Add(40 * time.Second)},
		{Kind: "component-kill", Target: "m1", Start: t0.Add(50 * time.Second), End: t0.Add(60 * time.Second)}}
	terms, err := readIntervals(ms, faults)
	if err != nil {
		t.Fatal(err)
	}
	mustPass(t, checkLeadership(sched, terms))
	mustPass(t, checkLeadership(ControllerManagerLease, terms))
	rec := checkComponentRecovery(sched, terms, faults)
	mustPass(t, rec)
	if d := rec.Details.(RecoveryDetails); d.Max != 10*time.Second {
		t.Errorf("scheduler recovery max %s, want 10s (pause at 20s, m2 active at 30s)", d.Max)
	}

	// Without the kill in the timeline, m1's controller-manager term ends
	// only at its restart (60s): it overlaps m2's from 55s.
	terms, err = readIntervals(ms, faults[:1])
	if err != nil {
		t.Fatal(err)
	}
	mustFail(t, checkLeadership(ControllerManagerLease, terms), "TWO ACTIVE", "m1_1 on m1", "m2_2 on m2")

	// A fence that ends after the other took over.
	ms[0].LogPath = writeLog(t, dir, "m1", starting(0), acquired(sched, "m1_1", 10), stopped(sched, "m1_1", 40, 31))
	terms, err = readIntervals(ms, faults)
	if err != nil {
		t.Fatal(err)
	}
	mustFail(t, checkLeadership(sched, terms), "TWO ACTIVE", "(1s overlap)")
}

func TestKubeObjects(t *testing.T) {
	op := func(verb, name, data string, call int, ok bool) history.KubeOp {
		o := history.KubeOp{Verb: verb, Resource: "configmaps", Name: name, Data: data, Call: ms(call), Return: ms(call + 5), OK: ok, Unknown: !ok}
		if !ok {
			o.Return = history.Unknown
		}
		return o
	}
	h := &history.History{Kube: []history.KubeOp{
		op("create", "a", "1", 0, true), op("update", "a", "2", 10, true),
		op("create", "b", "1", 0, true), op("update", "b", "2", 10, false), // b: "1" or "2"
		op("create", "c", "1", 0, true), op("delete", "c", "", 10, true),
	}}
	final := func(objs ...history.KubeObject) {
		h.KubeFinal = []history.KubeFinal{{Server: "https://m1", Objects: objs}}
	}
	cm := func(name, data string) history.KubeObject {
		return history.KubeObject{Resource: "configmaps", Name: name, Data: data}
	}
	final(cm("a", "2"), cm("b", "1"))
	mustPass(t, checkKube(h))
	final(cm("a", "2"), cm("b", "2"))
	mustPass(t, checkKube(h))
	final(cm("a", "1"), cm("b", "2"), cm("c", "1"))
	mustFail(t, checkKube(h), `configmaps/a is "1", want one of ["2"]`, "configmaps/c is \"1\", want one of [absent]")
}

func TestWriteRecovery(t *testing.T) {
	h := &history.History{Ops: []history.Op{
		put(0, "a", "1", -10, 10, 2),
		unknownPut(1, "a", "2", 100),
		put(0, "a", "3", 900, 1000, 3), // 1s after the fault at 0
		put(0, "a", "4", 1500, 1600, 4),
	}}
	faults := []Fault{{Kind: "kill", Target: "m1", Start: t0}, {Kind: "pause", Target: "m2", Start: t0.Add(1200 * time.Millisecond)}}
	r := checkWriteRecovery(Input{History: h, Faults: faults})
	mustPass(t, r)
	d := r.Details.(RecoveryDetails)
	if d.Max != time.Second || d.P50 != 400*time.Millisecond {
		t.Errorf("recovery p50 %s max %s, want 400ms and 1s", d.P50, d.Max)
	}
	faults = append(faults, Fault{Kind: "majority-kill", Target: "m1,m2", Start: t0.Add(2 * time.Second)})
	mustFail(t, checkWriteRecovery(Input{History: h, Faults: faults}), "no write acknowledged after 1 of 3 faults")
}

func TestRunWithoutMastersReportsWhatItCannotCheck(t *testing.T) {
	rs := Run(context.Background(), Input{History: goodHistory()})
	for _, r := range rs {
		switch r.Name {
		case "no-lost-writes", "convergence":
			if r.Pass {
				t.Errorf("%s passed without masters", r.Name)
			}
		case "linearizability", "revisions", "watches", "recovery-writes":
			mustPass(t, r)
		}
	}
	if Passed(rs) {
		t.Error("Passed with checks that could not run")
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	h := goodHistory()
	dir := t.TempDir()
	if err := h.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	back, err := history.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Ops) != len(h.Ops) || len(back.Watches) != len(h.Watches) || back.Ops[6].Return != history.Unknown || back.KeyPrefix != pfx {
		t.Errorf("round trip changed the history: %+v", back)
	}
	mustPass(t, checkLinearizability(Input{History: back, LinearizabilityTimeout: 10 * time.Second}))
}

// With the store's replay, unknown writes are resolved: one never applied is
// dropped, one applied at revision R must be visible to reads invoked after
// any op saw revision R.
func TestUnknownWritesResolvedByReplay(t *testing.T) {
	ops := []history.Op{
		put(0, "a", "0.1", 0, 10, 2),
		unknownPut(1, "a", "1.1", 20), // applied at 3, per the replay
		unknownPut(2, "a", "2.1", 25), // never applied
		put(3, "b", "3.1", 30, 40, 4), // saw revision 4 >= 3: "1.1" was in by 40
		get(0, "a", 50, 60, 4, "0.1", 2),
	}
	replay := []history.WatchEvent{
		{Key: pfx + "a", Type: "PUT", Value: "0.1", ModRev: 2},
		{Key: pfx + "a", Type: "PUT", Value: "1.1", ModRev: 3},
		{Key: pfx + "b", Type: "PUT", Value: "3.1", ModRev: 4},
	}
	h := &history.History{Ops: ops}
	// Without the replay the unknown put may still be in flight at 60.
	mustPass(t, checkLinearizability(Input{History: h, LinearizabilityTimeout: 10 * time.Second}))
	r := checkLinearizability(Input{History: h, LinearizabilityTimeout: 10 * time.Second, replay: replay})
	mustFail(t, r, "NOT linearizable on 1 of 2 keys")
	if d := r.Details.(LinearizabilityDetails); d.Resolved != 1 || d.Dropped != 1 {
		t.Errorf("resolved %d, dropped %d; want 1 and 1", d.Resolved, d.Dropped)
	}
	// The read that sees it passes.
	ops[4] = get(0, "a", 50, 60, 4, "1.1", 3)
	mustPass(t, checkLinearizability(Input{History: &history.History{Ops: ops}, LinearizabilityTimeout: 10 * time.Second, replay: replay}))

	// An unknown delete: dropped when the replay has no deletion it does
	// not explain; kept (and so may explain an absent key) otherwise.
	udel := history.Op{Client: 4, Kind: history.KindDelete, Key: pfx + "b", Call: ms(70), Return: history.Unknown, Unknown: true, Err: "timeout"}
	ops = append(ops, udel, get(0, "b", 200, 210, 5, "", 0))
	withDelete := append(replay, history.WatchEvent{Key: pfx + "b", Type: "DELETE", ModRev: 5})
	r = checkLinearizability(Input{History: &history.History{Ops: ops}, LinearizabilityTimeout: 10 * time.Second, replay: withDelete})
	mustPass(t, r)
	if d := r.Details.(LinearizabilityDetails); d.Dropped != 1 {
		t.Errorf("dropped %d, want 1 (the unknown put only)", d.Dropped)
	}
	ops[len(ops)-1] = get(0, "b", 200, 210, 4, "3.1", 4)
	r = checkLinearizability(Input{History: &history.History{Ops: ops}, LinearizabilityTimeout: 10 * time.Second, replay: replay})
	mustPass(t, r)
	if d := r.Details.(LinearizabilityDetails); d.Dropped != 2 {
		t.Errorf("dropped %d, want 2 (the unknown put and delete)", d.Dropped)
	}
}
