package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// populate builds a store with history, tombstones, leases and a compaction.
func populate(t testing.TB) *Store {
	s := New()
	for _, id := range []int64{3, 1, 2} {
		if err := s.LeaseGrant(id, id*10); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 40; i++ {
		mustPut(t, s, fmt.Sprintf("k%02d", i%13), fmt.Sprint("v", i), int64(i%4))
		if i%7 == 6 {
			mustDelete(t, s, fmt.Sprintf("k%02d", i%5), "")
		}
	}
	if _, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("t1", "x"), delOp("k03", "k06"), putOp("t2", "y")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(20); err != nil {
		t.Fatal(err)
	}
	if err := s.LeaseRevoke(2); err != nil {
		t.Fatal(err)
	}
	return s
}

// sameState compares two stores through the public read API.
func sameState(t *testing.T, a, b *Store) {
	t.Helper()
	if a.Rev() != b.Rev() || a.CompactRev() != b.CompactRev() {
		t.Fatalf("rev %d/%d compact %d/%d", a.Rev(), b.Rev(), a.CompactRev(), b.CompactRev())
	}
	for rev := a.CompactRev(); rev <= a.Rev(); rev++ {
		if x, y := allKVs(t, a, rev), allKVs(t, b, rev); x != y {
			t.Fatalf("at %d:\n%s\n%s", rev, x, y)
		}
	}
	ea, na, err1 := a.Events(a.CompactRev()+1, nil, []byte{0}, 0)
	eb, nb, err2 := b.Events(b.CompactRev()+1, nil, []byte{0}, 0)
	if err1 != nil || err2 != nil || na != nb || eventsString(ea) != eventsString(eb) {
		t.Fatalf("events differ (%v %v):\n%s\n%s", err1, err2, eventsString(ea), eventsString(eb))
	}
	if fmt.Sprint(a.Leases()) != fmt.Sprint(b.Leases()) {
		t.Fatalf("leases %v / %v", a.Leases(), b.Leases())
	}
	for _, l := range a.Leases() {
		_, ka, _ := a.LeaseInfo(l.ID)
		_, kb, _ := b.LeaseInfo(l.ID)
		if fmt.Sprintf("%q", ka) != fmt.Sprintf("%q", kb) {
			t.Fatalf("lease %d keys %q / %q", l.ID, ka, kb)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := populate(t)
	var buf bytes.Buffer
	n, err := s.View().WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d %v (buffer %d)", n, err, buf.Len())
	}
	r := New()
	mustPut(t, r, "junk", "x", 0)
	if err := r.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	sameState(t, s, r)
	// The restored store keeps working identically.
	for _, st := range []*Store{s, r} {
		mustPut(t, st, "k01", "after", 1)
		if err := st.Compact(st.Rev() - 3); err != nil {
			t.Fatal(err)
		}
	}
	sameState(t, s, r)
}

func TestViewIsolation(t *testing.T) {
	s := populate(t)
	var want bytes.Buffer
	if _, err := s.View().WriteTo(&want); err != nil {
		t.Fatal(err)
	}
	v := s.View()
	mustPut(t, s, "k01", "later", 0)
	mustDelete(t, s, "k", "l")
	if err := s.Compact(s.Rev()); err != nil {
		t.Fatal(err)
	}
	if err := s.LeaseGrant(99, 1); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := v.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("view changed after later mutations")
	}
}

func TestRestoreBadInput(t *testing.T) {
	s := populate(t)
	var buf bytes.Buffer
	if _, err := s.View().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x40
	inputs := map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a snapshot at all"),
		"bad magic": append([]byte("SYNODMVX"), good[8:]...),
		"flipped":   flipped,
	}
	for _, cut := range []int{9, 12, len(good) / 3, len(good) - 5, len(good) - 1} {
		inputs[fmt.Sprint("truncated at ", cut)] = good[:cut]
	}
	target := New()
	mustPut(t, target, "keep", "me", 0)
	for name, in := range inputs {
		err := target.Restore(bytes.NewReader(in))
		if !errors.Is(err, ErrSnapshotFormat) {
			t.Errorf("%s: error %v, want ErrSnapshotFormat", name, err)
		}
		if got := allKVs(t, target, 0); got != "keep=me@2/2/1/0" || target.Rev() != 2 {
			t.Fatalf("%s: state changed to %s", name, got)
		}
	}
}

func TestRecordsLoadRoundTrip(t *testing.T) {
	s := populate(t)
	v := s.View()
	var recs []Record
	last := [2]int64{}
	if err := v.Records(func(r Record) error {
		cur := [2]int64{r.KV.ModRevision, r.Sub}
		if cur[0] < last[0] || cur[0] == last[0] && cur[1] <= last[1] {
			return fmt.Errorf("record %v out of order after %v", cur, last)
		}
		last = cur
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.Load(v.Rev(), v.CompactRev(), recs, v.Leases()); err != nil {
		t.Fatal(err)
	}
	sameState(t, s, r)

	bad := []struct {
		name string
		recs []Record
		rev  int64
	}{
		{"out of order", []Record{recs[1], recs[0]}, v.Rev()},
		{"after rev", recs, recs[len(recs)-1].KV.ModRevision - 1},
		{"empty key", []Record{{KV: recs[0].KV, Sub: 0}, {Sub: 1}}, v.Rev()},
	}
	bad[2].recs[1].KV.ModRevision = recs[0].KV.ModRevision
	for _, tt := range bad {
		err := r.Load(tt.rev, 0, tt.recs, nil)
		if !errors.Is(err, ErrSnapshotFormat) {
			t.Errorf("%s: error %v", tt.name, err)
		}
	}
	sameState(t, s, r)
}
