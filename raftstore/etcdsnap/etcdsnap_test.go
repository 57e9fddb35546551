package etcdsnap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// sample is a self-consistent store history (what etcd itself would hold):
//
//	2: put foo=v1            3: put bar=b1 (lease 0x1234)
//	4: txn put foo=v2, put baz=z1
//	5: delete foo            6: put foo=v3
//	7: put qux=q1 (lease 0x5678)   8: delete baz
func sample() *Snapshot {
	kv := func(k, v string, create, mod, ver, lease int64) mvccpb.KeyValue {
		return mvccpb.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: create, ModRevision: mod, Version: ver, Lease: lease}
	}
	tomb := func(k string, mod int64) Record {
		return Record{KV: mvccpb.KeyValue{Key: []byte(k), ModRevision: mod}, Tombstone: true}
	}
	return &Snapshot{
		Rev: 8, CompactRev: 3, ConsistentIndex: 42, Term: 7,
		Records: []Record{
			{KV: kv("foo", "v1", 2, 2, 1, 0)},
			{KV: kv("bar", "b1", 3, 3, 1, 0x1234)},
			{KV: kv("foo", "v2", 2, 4, 2, 0)},
			{KV: kv("baz", "z1", 4, 4, 1, 0), Sub: 1},
			tomb("foo", 5),
			{KV: kv("foo", "v3", 6, 6, 1, 0)},
			{KV: kv("qux", "q1", 7, 7, 1, 0x5678)},
			tomb("baz", 8),
		},
		Leases: []Lease{{ID: 0x1234, TTL: 3600}, {ID: 0x5678, TTL: 7200}, {ID: 0x9abc, TTL: 60}},
	}
}

func recString(r Record) string {
	kv := r.KV
	return fmt.Sprintf("(%d,%d) tomb=%v key=%q val=%q create=%d ver=%d lease=%x",
		kv.ModRevision, r.Sub, r.Tombstone, kv.Key, kv.Value, kv.CreateRevision, kv.Version, kv.Lease)
}

func checkSnapshot(t *testing.T, got, want *Snapshot) {
	t.Helper()
	if got.Rev != want.Rev || got.CompactRev != want.CompactRev || got.ConsistentIndex != want.ConsistentIndex || got.Term != want.Term {
		t.Errorf("header: got rev %d compact %d ci %d term %d; want rev %d compact %d ci %d term %d",
			got.Rev, got.CompactRev, got.ConsistentIndex, got.Term, want.Rev, want.CompactRev, want.ConsistentIndex, want.Term)
	}
	checkRecords(t, got.Records, want.Records)
	if !slices.Equal(got.Leases, want.Leases) {
		t.Errorf("leases: got %v, want %v", got.Leases, want.Leases)
	}
}

func checkRecords(t *testing.T, got, want []Record) {
	t.Helper()
	var gs, ws []string
	for _, r := range got {
		gs = append(gs, recString(r))
	}
	for _, r := range want {
		ws = append(ws, recString(r))
	}
	if !slices.Equal(gs, ws) {
		t.Errorf("records:\ngot:\n  %s\nwant:\n  %s", strings.Join(gs, "\n  "), strings.Join(ws, "\n  "))
	}
}

func writeFile(t *testing.T, s *Snapshot) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "snap.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Write(f, dir, s)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != n || n%512 != sha256.Size {
		t.Fatalf("Write returned %d, file has %d bytes; want equal and size %% 512 == 32", n, st.Size())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temp files left in %s: %v", dir, ents)
	}
	return path
}

func TestRoundTrip(t *testing.T) {
	s := sample()
	got, err := Read(writeFile(t, s), false)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, got, s)

	// Store revision beyond the last record, no consistent index/term.
	s.Rev, s.ConsistentIndex, s.Term = 12, 0, 0
	got, err = Read(writeFile(t, s), false)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, got, s)

	// Empty store.
	empty := &Snapshot{Rev: 1}
	got, err = Read(writeFile(t, empty), false)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, got, empty)

	// Many records: several write transactions.
	big := &Snapshot{Rev: 30001}
	for i := int64(2); i <= big.Rev; i++ {
		big.Records = append(big.Records, Record{KV: mvccpb.KeyValue{
			Key: fmt.Appendf(nil, "k%06d", i%500), Value: bytes.Repeat([]byte{'x'}, int(i%100)),
			CreateRevision: i, ModRevision: i, Version: 1,
		}})
	}
	got, err = Read(writeFile(t, big), false)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, got, big)
}

func TestWriteRejectsBadInput(t *testing.T) {
	for name, mut := range map[string]func(*Snapshot){
		"out of order":        func(s *Snapshot) { s.Records[1], s.Records[2] = s.Records[2], s.Records[1] },
		"duplicate revision":  func(s *Snapshot) { s.Records[1] = s.Records[0] },
		"rev below records":   func(s *Snapshot) { s.Rev = 7 },
		"compact above rev":   func(s *Snapshot) { s.CompactRev = 9 },
		"empty key":           func(s *Snapshot) { s.Records[0].KV.Key = nil },
		"zero lease ID":       func(s *Snapshot) { s.Leases[0].ID = 0 },
		"zero mod revision":   func(s *Snapshot) { s.Records[0].KV.ModRevision = 0 },
		"negative sub":        func(s *Snapshot) { s.Records[0].Sub = -1 },
		"negative store rev.": func(s *Snapshot) { s.Rev, s.Records = -1, nil },
	} {
		s := sample()
		mut(s)
		var buf bytes.Buffer
		if _, err := Write(&buf, t.TempDir(), s); err == nil {
			t.Errorf("%s: Write succeeded", name)
		}
	}
}

func TestWriteStreamIteratorError(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("boom")
	var buf bytes.Buffer
	_, err := WriteStream(&buf, dir, Header{Rev: 5}, func(fn func(Record) error) error {
		if err := fn(sample().Records[0]); err != nil {
			return err
		}
		return boom
	}, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("WriteStream: %v, want boom", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 || buf.Len() != 0 {
		t.Fatalf("after failure: %d temp files left, %d bytes written", len(ents), buf.Len())
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		p = "/usr/bin/" + name
		if _, err2 := os.Stat(p); err2 != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (apt-get install etcd-server etcd-client): %v", name, err)
			}
			t.Skipf("%s not installed: %v", name, err)
		}
	}
	return p
}

type snapStatus struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
}

func etcdctlStatus(t *testing.T, path string) snapStatus {
	t.Helper()
	cmd := exec.Command(needTool(t, "etcdctl"), "--write-out=json", "snapshot", "status", path)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("etcdctl snapshot status: %v\nstdout: %s\nstderr: %s", err, out, stderr.Bytes())
	}
	var st snapStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("etcdctl status output %q: %v", out, err)
	}
	return st
}

// metaEntries is how many meta keys Write stores for s.
func metaEntries(s *Snapshot) int {
	n := 1 // synod_rev
	if s.ConsistentIndex != 0 {
		n++
	}
	if s.Term != 0 {
		n++
	}
	if s.CompactRev > 0 {
		n += 2
	}
	return n
}

func TestEtcdctlStatus(t *testing.T) {
	s := sample()
	st := etcdctlStatus(t, writeFile(t, s))
	lastRev := s.Records[len(s.Records)-1].KV.ModRevision
	if st.Revision != lastRev {
		t.Errorf("etcdctl revision %d, want %d", st.Revision, lastRev)
	}
	if want := len(s.Records) + len(s.Leases) + metaEntries(s); st.TotalKey != want {
		t.Errorf("etcdctl totalKey %d, want %d", st.TotalKey, want)
	}
	if st.TotalSize <= 0 {
		t.Errorf("etcdctl totalSize %d", st.TotalSize)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type etcdProc struct {
	cli  *clientv3.Client
	stop func()
}

// startEtcd runs Debian's etcd as the single member "default" on loopback,
// with the given data dir and peer port, and waits until it serves.
func startEtcd(t *testing.T, dataDir string, peerPort int) *etcdProc {
	t.Helper()
	bin := needTool(t, "etcd")
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	logPath := filepath.Join(t.TempDir(), "etcd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"--name", "default", "--data-dir", dataDir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default="+peer,
		"--logger", "zap", "--log-outputs", "stderr")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("etcd pid %d did not exit after kill", cmd.Process.Pid)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		stop()
		t.Fatalf("client: %v", err)
	}
	p := &etcdProc{cli: cli, stop: func() { cli.Close(); stop() }}
	t.Cleanup(p.stop)

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "ready-probe")
		cancel()
		if err == nil {
			return p
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("etcd exited before serving: %v\n%s", cmd.ProcessState, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("etcd not serving after 60s: %v\n%s", err, log)
		}
		select { // bounded poll interval; also wakes on exit
		case <-done:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestRealEtcdSnapshot(t *testing.T) {
	e := startEtcd(t, filepath.Join(t.TempDir(), "etcd"), freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli := e.cli
	put := func(k, v string, opts ...clientv3.OpOption) int64 {
		r, err := cli.Put(ctx, k, v, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}
	revA1 := put("/a", "a1")
	revB1 := put("/b", "b1")
	txn, err := cli.Txn(ctx).Then(
		clientv3.OpPut("/c", "c1"), clientv3.OpPut("/d", "d1"), clientv3.OpDelete("/a")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	revT := txn.Header.Revision
	lg, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	lid := int64(lg.ID)
	revE := put("/e", "e1", clientv3.WithLease(lg.ID))
	revA2 := put("/a", "a2")
	del, err := cli.Delete(ctx, "/b")
	if err != nil {
		t.Fatal(err)
	}
	revDB := del.Header.Revision
	if revDB != revA1+5 || revT != revA1+2 {
		t.Fatalf("unexpected revisions: a1 %d txn %d delete %d", revA1, revT, revDB)
	}
	// Physically compact at revA2: /a@revA1 and its tombstone go.
	if _, err := cli.Compact(ctx, revA2, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "etcd.snap")
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(rc); err != nil {
		t.Fatalf("snapshot stream: %v", err)
	}
	rc.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e.stop()

	got, err := Read(path, false)
	if err != nil {
		t.Fatalf("Read(real etcd snapshot): %v", err)
	}
	kv := func(k, v string, create, mod, ver, lease int64) mvccpb.KeyValue {
		return mvccpb.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: create, ModRevision: mod, Version: ver, Lease: lease}
	}
	want := &Snapshot{
		Rev: revDB, CompactRev: revA2,
		Records: []Record{
			{KV: kv("/b", "b1", revB1, revB1, 1, 0)},
			{KV: kv("/c", "c1", revT, revT, 1, 0)},
			{KV: kv("/d", "d1", revT, revT, 1, 0), Sub: 1},
			{KV: kv("/e", "e1", revE, revE, 1, lid)},
			{KV: kv("/a", "a2", revA2, revA2, 1, 0)},
			{KV: mvccpb.KeyValue{Key: []byte("/b"), ModRevision: revDB}, Tombstone: true},
		},
		Leases: []Lease{{ID: lid, TTL: 600}},
	}
	if got.ConsistentIndex == 0 {
		t.Errorf("consistent index not read from real etcd snapshot")
	}
	want.ConsistentIndex, want.Term = got.ConsistentIndex, got.Term // raft internals
	checkSnapshot(t, got, want)

	// What we read, we write back in a form etcdctl accepts.
	path2 := writeFile(t, got)
	st := etcdctlStatus(t, path2)
	if st.Revision != revDB {
		t.Errorf("etcdctl on rewritten snapshot: revision %d, want %d", st.Revision, revDB)
	}
	again, err := Read(path2, false)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, again, got)
}

// TestRealEtcdRestoresOurSnapshot restores a snapshot we wrote with
// `etcdctl snapshot restore`, starts etcd on it and reads the data back.
func TestRealEtcdRestoresOurSnapshot(t *testing.T) {
	s := sample()
	path := writeFile(t, s)
	etcdctl := needTool(t, "etcdctl")
	dataDir := filepath.Join(t.TempDir(), "restored")
	peerPort := freePort(t)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	cmd := exec.Command(etcdctl, "snapshot", "restore", path, "--data-dir", dataDir, "--name", "default",
		"--initial-cluster", "default="+peer, "--initial-advertise-peer-urls", peer)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("etcdctl snapshot restore: %v\n%s", err, out)
	}

	e := startEtcd(t, dataDir, peerPort)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := e.cli.Get(ctx, "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != s.Rev {
		t.Errorf("restored etcd at revision %d, want %d", resp.Header.Revision, s.Rev)
	}
	var got []string
	for _, kv := range resp.Kvs {
		got = append(got, recString(Record{KV: *kv}))
	}
	want := []string{
		recString(s.Records[1]), // bar
		recString(s.Records[5]), // foo v3
		recString(s.Records[6]), // qux
	}
	if !slices.Equal(got, want) {
		t.Errorf("restored keys:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// History survives the restore, and so does the compaction point.
	old, err := e.cli.Get(ctx, "foo", clientv3.WithRev(4))
	if err != nil || len(old.Kvs) != 1 || string(old.Kvs[0].Value) != "v2" {
		t.Errorf("get foo at rev 4: %v %v", old, err)
	}
	if _, err := e.cli.Get(ctx, "foo", clientv3.WithRev(2)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Errorf("get at rev 2 below compaction 3: err %v, want compacted", err)
	}
	for _, l := range s.Leases {
		ttl, err := e.cli.TimeToLive(ctx, clientv3.LeaseID(l.ID), clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatalf("lease %x: %v", l.ID, err)
		}
		if ttl.GrantedTTL != l.TTL {
			t.Errorf("lease %x: granted TTL %d, want %d", l.ID, ttl.GrantedTTL, l.TTL)
		}
		var keys []string
		for _, k := range ttl.Keys {
			keys = append(keys, string(k))
		}
		wantKeys := map[int64][]string{0x1234: {"bar"}, 0x5678: {"qux"}}[l.ID]
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("lease %x: keys %q, want %q", l.ID, keys, wantKeys)
		}
	}
}

// appendSHA returns db followed by its sha256, as a snapshot stream ends.
func appendSHA(db []byte) []byte {
	sum := sha256.Sum256(db)
	return append(slices.Clone(db), sum[:]...)
}

// boltFile builds a bbolt db with fill and returns its bytes.
func boltFile(t *testing.T, fill func(tx *bolt.Tx) error) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fill); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCorruptFiles(t *testing.T) {
	good, err := os.ReadFile(writeFile(t, sample()))
	if err != nil {
		t.Fatal(err)
	}
	db := good[:len(good)-sha256.Size]
	rng := rand.New(rand.NewSource(1))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	flip := func(b []byte, i int) []byte {
		b = slices.Clone(b)
		b[i] ^= 0x40
		return b
	}
	// A db whose pages all lie about themselves, with a valid hash:
	// exercises bbolt on corrupt data behind a correct checksum.
	scrambled := slices.Clone(db)
	for i := 4096 * 2; i < len(scrambled); i += 97 {
		scrambled[i] ^= 0xff
	}
	noKeyBucket := boltFile(t, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("meta")); return err })
	badRevKey := boltFile(t, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		return b.Put([]byte("not-a-revision"), []byte{})
	})
	badKV := boltFile(t, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		return b.Put(revToBytes(2, 0, false), []byte{0xff, 0xff, 0xff})
	})
	badLease := boltFile(t, func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("key")); err != nil {
			return err
		}
		b, err := tx.CreateBucket([]byte("lease"))
		if err != nil {
			return err
		}
		return b.Put(u64(7), []byte{0x08})
	})

	cases := []struct {
		name string
		data []byte
		skip bool // skipHashCheck
		want string
	}{
		{"empty", nil, false, "empty"},
		{"empty skip-hash", nil, true, "empty"},
		{"truncated", good[:len(good)-1000], false, "no trailing sha256"},
		{"truncated to pages, skip-hash", good[:4096*3], true, ""},
		{"flipped byte", flip(good, len(good)/2), false, "sha256 mismatch"},
		{"flipped byte in hash", flip(good, len(good)-1), true, "sha256 mismatch"},
		{"garbage", garbage(10000), false, "no trailing sha256"},
		{"garbage skip-hash", garbage(16384), true, "bbolt"},
		{"garbage with valid hash", appendSHA(garbage(16384)), false, "bbolt"},
		{"bare db without hash", db, false, "no trailing sha256"},
		{"scrambled pages, valid hash", appendSHA(scrambled), false, ""},
		{"no key bucket", appendSHA(noKeyBucket), false, `no "key" bucket`},
		{"malformed revision key", appendSHA(badRevKey), false, "malformed revision key"},
		{"malformed KeyValue", appendSHA(badKV), false, "bad KeyValue"},
		{"malformed lease", appendSHA(badLease), false, "lease"},
	}
	dir := t.TempDir()
	for i, c := range cases {
		p := filepath.Join(dir, fmt.Sprintf("c%d.db", i))
		if err := os.WriteFile(p, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Read(p, c.skip)
		if err == nil {
			t.Errorf("%s: Read succeeded: %d records", c.name, len(s.Records))
			continue
		}
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q; want ErrFormat containing %q", c.name, err, c.want)
		}
		t.Logf("%s: %v", c.name, err)
	}

	// The bare db is fine with skipHashCheck, as with etcdutl --skip-hash-check.
	p := filepath.Join(dir, "bare.db")
	if err := os.WriteFile(p, db, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p, true)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, got, sample())

	if _, err := Read(filepath.Join(dir, "missing"), false); err == nil {
		t.Error("Read of a missing file succeeded")
	}
}

// TestRandomCorruption flips random bytes of a valid multi-page database
// (branch, leaf, overflow and freelist pages, inline and non-inline
// buckets) and re-hashes it, so that only the structural checks stand
// between bbolt and the damage: Read must fail cleanly or succeed, never
// crash. It also cuts the database at random page boundaries.
func TestRandomCorruption(t *testing.T) {
	s := &Snapshot{Rev: 1500, Leases: []Lease{{ID: 1, TTL: 5}}}
	for i := int64(2); i <= s.Rev; i++ {
		n := int(i % 50)
		if i%97 == 0 {
			n = 9000 // overflow pages
		}
		s.Records = append(s.Records, Record{KV: mvccpb.KeyValue{
			Key: fmt.Appendf(nil, "key-%d", i%300), Value: bytes.Repeat([]byte{byte(i)}, n),
			CreateRevision: i, ModRevision: i, Version: 1,
		}})
	}
	good, err := os.ReadFile(writeFile(t, s))
	if err != nil {
		t.Fatal(err)
	}
	db := good[:len(good)-sha256.Size]
	rng := rand.New(rand.NewSource(2))
	dir := t.TempDir()
	p := filepath.Join(dir, "c.db")
	var failed, passed int
	for i := 0; i < 400; i++ {
		var data []byte
		if i%4 == 3 {
			pages := len(db) / 4096
			data = appendSHA(db[:4096*(2+rng.Intn(pages-2))])
		} else {
			b := slices.Clone(db)
			for j := 0; j <= rng.Intn(8); j++ {
				b[rng.Intn(len(b))] ^= byte(1 + rng.Intn(255))
			}
			data = appendSHA(b)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(p, false); err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("iteration %d: error not wrapping ErrFormat: %v", i, err)
			}
			failed++
		} else {
			passed++ // a flip inside a value or an unused area
		}
	}
	t.Logf("%d corrupted files rejected, %d read (damage in data or unused space)", failed, passed)
}
