package mvcc

import (
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// model is a deliberately naive reference: a full copy of the key space at
// every revision, plus the events of every revision.
type model struct {
	rev, compactRev int64
	states          []map[string]mkv // states[r]: keys at revision r
	events          [][]string       // events[r], rendered like eventsString
	leases          map[int64]int64  // id -> ttl
	cur             map[string]mkv   // the write in progress
	curEvents       []string
}

type mkv struct {
	val                     string
	create, mod, ver, lease int64
}

func newModel() *model {
	return &model{rev: 1, states: []map[string]mkv{nil, {}}, events: [][]string{nil, nil}, leases: map[int64]int64{}}
}

func (m *model) begin() {
	m.cur = map[string]mkv{}
	for k, v := range m.states[m.rev] {
		m.cur[k] = v
	}
	m.curEvents = nil
}

func (m *model) put(k, v string, lease int64) {
	old, ok := m.cur[k]
	n := mkv{val: v, create: m.rev + 1, mod: m.rev + 1, ver: 1, lease: lease}
	prev := "-"
	if ok {
		n.create, n.ver, prev = old.create, old.ver+1, old.val
	}
	m.cur[k] = n
	m.curEvents = append(m.curEvents, fmt.Sprintf("PUT %s=%s@%d prev=%s", k, v, m.rev+1, prev))
}

func (m *model) del(k string) {
	if old, ok := m.cur[k]; ok {
		delete(m.cur, k)
		m.curEvents = append(m.curEvents, fmt.Sprintf("DELETE %s=@%d prev=%s", k, m.rev+1, old.val))
	}
}

func (m *model) commit() {
	if len(m.curEvents) == 0 {
		return
	}
	m.rev++
	m.states = append(m.states, m.cur)
	m.events = append(m.events, m.curEvents)
}

func (m *model) sortedKeys(rev int64, from, to string) []string {
	var ks []string
	for k := range m.states[rev] {
		if k >= from && (to == "" || k < to) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

func (m *model) render(rev int64) string {
	var parts []string
	for _, k := range m.sortedKeys(rev, "", "") {
		v := m.states[rev][k]
		parts = append(parts, fmt.Sprintf("%s=%s@%d/%d/%d/%d", k, v.val, v.create, v.mod, v.ver, v.lease))
	}
	return strings.Join(parts, " ")
}

func TestRandomAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	s, m := New(), newModel()
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	rk := func() string { return keys[rng.Intn(len(keys))] }
	randLease := func() int64 {
		if rng.Intn(3) == 0 {
			return 0
		}
		return int64(1 + rng.Intn(4))
	}
	for step := 0; step < 4000; step++ {
		switch op := rng.Intn(20); {
		case op < 8: // put
			k, v, l := rk(), fmt.Sprint(step), randLease()
			_, err := s.Put(&pb.PutRequest{Key: []byte(k), Value: []byte(v), Lease: l})
			if _, ok := m.leases[l]; l != 0 && !ok {
				wantErr(t, err, ErrLeaseNotFound)
				break
			}
			wantErr(t, err, nil)
			m.begin()
			m.put(k, v, l)
			m.commit()
		case op < 11: // delete range
			from, to := rk(), rk()
			if _, err := s.DeleteRange(&pb.DeleteRangeRequest{Key: []byte(from), RangeEnd: []byte(to)}); err != nil {
				t.Fatal(err)
			}
			m.begin()
			if from < to {
				for _, k := range m.sortedKeys(m.rev, from, to) {
					m.del(k)
				}
			}
			m.commit()
		case op < 15: // txn: compare version of one key, then put/delete distinct keys
			ck, cv := rk(), int64(rng.Intn(3))
			perm := rng.Perm(len(keys))
			pk, dk, fk := keys[perm[0]], keys[perm[1]], keys[perm[2]]
			resp, err := s.Txn(&pb.TxnRequest{
				Compare: []*pb.Compare{cmpVersion(ck, pb.Compare_EQUAL, cv)},
				Success: []*pb.RequestOp{putOp(pk, fmt.Sprint("t", step)), delOp(dk, ""), rangeOp(pk, "")},
				Failure: []*pb.RequestOp{putOp(fk, fmt.Sprint("f", step))},
			})
			if err != nil {
				t.Fatal(err)
			}
			ok := m.states[m.rev][ck].ver == cv
			if resp.Succeeded != ok {
				t.Fatalf("step %d: txn succeeded %v, model %v", step, resp.Succeeded, ok)
			}
			m.begin()
			if ok {
				m.put(pk, fmt.Sprint("t", step), 0)
				m.del(dk)
			} else {
				m.put(fk, fmt.Sprint("f", step), 0)
			}
			m.commit()
		case op < 16: // lease grant
			id := int64(1 + rng.Intn(4))
			err := s.LeaseGrant(id, id)
			if _, ok := m.leases[id]; ok {
				wantErr(t, err, ErrLeaseExists)
				break
			}
			wantErr(t, err, nil)
			m.leases[id] = id
		case op < 17: // lease revoke
			id := int64(1 + rng.Intn(4))
			err := s.LeaseRevoke(id)
			if _, ok := m.leases[id]; !ok {
				wantErr(t, err, ErrLeaseNotFound)
				break
			}
			wantErr(t, err, nil)
			delete(m.leases, id)
			m.begin()
			for _, k := range m.sortedKeys(m.rev, "", "") {
				if m.cur[k].lease == id {
					m.del(k)
				}
			}
			m.commit()
		case op < 18: // compact somewhere between the last compaction and now
			if m.rev-1 <= m.compactRev {
				break
			}
			rev := m.compactRev + 1 + rng.Int63n(m.rev-m.compactRev)
			if err := s.Compact(rev); err != nil {
				t.Fatal(err)
			}
			m.compactRev = rev
		case op < 19: // snapshot round trip replaces the store
			var buf strings.Builder
			if _, err := s.View().WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			r := New()
			if err := r.Restore(strings.NewReader(buf.String())); err != nil {
				t.Fatal(err)
			}
			s = r
		default: // Records/Load round trip replaces the store
			v := s.View()
			var recs []Record
			_ = v.Records(func(r Record) error { recs = append(recs, r); return nil })
			r := New()
			if err := r.Load(v.Rev(), v.CompactRev(), recs, v.Leases()); err != nil {
				t.Fatal(err)
			}
			s = r
		}
		checkModel(t, step, s, m, rng)
	}
}

func checkModel(t *testing.T, step int, s *Store, m *model, rng *rand.Rand) {
	t.Helper()
	if s.Rev() != m.rev {
		t.Fatalf("step %d: rev %d, model %d", step, s.Rev(), m.rev)
	}
	low := max(m.compactRev, 1)
	for _, rev := range []int64{m.rev, low, low + rng.Int63n(m.rev-low+1)} {
		if got, want := allKVs(t, s, rev), m.render(rev); got != want {
			t.Fatalf("step %d at %d:\n got %s\nwant %s", step, rev, got, want)
		}
	}
	if m.compactRev > 0 {
		if _, err := s.Range(&pb.RangeRequest{Key: []byte("a"), Revision: m.compactRev - 1}); m.compactRev > 1 && !errors.Is(err, ErrCompacted) {
			t.Fatalf("step %d: read before compaction: %v", step, err)
		}
	}
	from := m.compactRev + 1 + rng.Int63n(m.rev-m.compactRev+1)
	var want []string
	for r := from; r <= m.rev; r++ {
		want = append(want, m.events[r]...)
	}
	evs, next, err := s.Events(from, nil, []byte{0}, 0)
	if err != nil || next != m.rev+1 || eventsString(evs) != strings.Join(want, "; ") {
		t.Fatalf("step %d: events from %d: %v next %d\n got %s\nwant %s", step, from, err, next, eventsString(evs), strings.Join(want, "; "))
	}
	for _, id := range []int64{1, 2, 3, 4} {
		_, keys, err := s.LeaseInfo(id)
		if _, ok := m.leases[id]; !ok {
			wantErr(t, err, ErrLeaseNotFound)
			continue
		}
		var wk []string
		for _, k := range m.sortedKeys(m.rev, "", "") {
			if m.states[m.rev][k].lease == id {
				wk = append(wk, k)
			}
		}
		if fmt.Sprintf("%s", keys) != fmt.Sprint(wk) {
			t.Fatalf("step %d: lease %d keys %s, model %v", step, id, keys, wk)
		}
	}
}
