package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"synod/raftstore"
)

// runCLI runs synod in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"synod"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsCommands(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, cmd := range []string{"master", "up", "member", "status", "snapshot"} {
		if !strings.Contains(out, "\n   "+cmd+" ") {
			t.Errorf("--help does not list %q:\n%s", cmd, out)
		}
	}
	code, out, _ = runCLI(t, "member", "--help")
	if code != 0 || !strings.Contains(out, "promote") {
		t.Fatalf("member --help exit %d:\n%s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	nonEmpty := t.TempDir()
	os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644)
	snap := filepath.Join(t.TempDir(), "snap.db")
	os.WriteFile(snap, []byte("x"), 0o644)
	tests := []struct {
		args []string
		wmsg string
	}{
		{nil, ""},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"--log-level", "loud", "status"}, "bad --log-level"},
		{[]string{"master", "--bogus"}, "flag provided but not defined"},
		{[]string{"master", "extra"}, "takes no arguments"},
		{[]string{"master", "--initial-cluster-state", "maybe"}, "initial-cluster-state"},
		{[]string{"master", "--name", "a", "--initial-advertise-peer-urls", "http://127.0.0.1:1",
			"--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:2"}, "even number of voters"},
		{[]string{"master", "--initial-cluster", "a=http://127.0.0.1:1"}, "does not include"},
		{[]string{"master", "--cert-file", "c.pem"}, "--key-file"},
		{[]string{"master", "--peer-cert-file", "c.pem", "--peer-key-file", "k.pem"}, "mutual"},
		{[]string{"master", "--listen-client-urls", "https://127.0.0.1:2379"}, "--cert-file"},
		{[]string{"master", "--heartbeat-interval", "0"}, "positive"},
		{[]string{"up", "--masters", "4"}, "want 1, 3, 5 or 7"},
		{[]string{"up", "--masters", "2"}, "want 1, 3, 5 or 7"},
		{[]string{"up", "stray"}, "unexpected argument"},
		{[]string{"member"}, ""},
		{[]string{"member", "frob"}, `unknown command "frob"`},
		{[]string{"member", "add"}, "NAME"},
		{[]string{"member", "add", "m4"}, "--peer-urls is required"},
		{[]string{"member", "add", "m4", "--peer-urls", "nonsense"}, "bad URL"},
		{[]string{"member", "remove"}, "member ID"},
		{[]string{"member", "remove", "zz"}, "bad member ID"},
		{[]string{"member", "promote", "1", "2"}, "member ID"},
		{[]string{"status", "--endpoints", "a", "--cluster-file", "b"}, "not both"},
		{[]string{"snapshot", "save"}, "FILE"},
		{[]string{"snapshot", "restore", "/does/not/exist"}, "no such file"},
		{[]string{"snapshot", "restore", snap, "--data-dir", nonEmpty}, "not empty"},
		{[]string{"snapshot", "restore", snap, "--data-dir", t.TempDir() + "/new", "--name", "x",
			"--initial-cluster", "y=http://127.0.0.1:2380"}, "does not include"},
	}
	for _, tt := range tests {
		code, _, errOut := runCLI(t, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.wmsg) {
			t.Errorf("synod %q: exit %d, stderr %q; want exit 2 and %q", tt.args, code, errOut, tt.wmsg)
		}
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(nil, nil)
	tests := []struct{ in, want string }{
		{"member add m4 --peer-urls http://x:1 --learner", "member add --peer-urls http://x:1 --learner m4"},
		{"master --log-level debug --name a", "--log-level debug master --name a"},
		{"snapshot save f.db --endpoints=a:1", "snapshot save --endpoints=a:1 f.db"},
		{"member add --peer-urls list m4", "member add --peer-urls list m4"},
		{"up --masters 3 -- --heartbeat-interval 100", "up --masters 3 -- --heartbeat-interval 100"},
		{"member remove abc --bogus", "member remove --bogus abc"},
	}
	for _, tt := range tests {
		got := strings.Join(reorderArgs(app, append([]string{"synod"}, strings.Fields(tt.in)...))[1:], " ")
		if got != tt.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMasterConfig(t *testing.T) {
	var got raftstore.Config
	orig := runStore
	t.Cleanup(func() { runStore = orig })
	runStore = func(ctx context.Context, cfg raftstore.Config, _ apiOptions, _ *slog.Logger) error {
		got = cfg
		return nil
	}

	code, _, errOut := runCLI(t, "master")
	if code != 0 {
		t.Fatalf("master with defaults: exit %d: %s", code, errOut)
	}
	if got.Name != "default" || got.DataDir != "default.synod" || got.AdvertisePeerURL != "http://127.0.0.1:2380" ||
		!reflect.DeepEqual(got.ListenClientURLs, []string{"http://127.0.0.1:2379"}) ||
		!reflect.DeepEqual(got.InitialCluster, []raftstore.Member{{Name: "default", PeerURL: "http://127.0.0.1:2380"}}) {
		t.Fatalf("defaults: %+v", got)
	}

	code, _, errOut = runCLI(t, "master", "--name", "m2", "--data-dir", "/d",
		"--listen-client-urls", "http://127.0.0.1:3379,http://10.0.0.2:3379",
		"--listen-peer-urls", "http://0.0.0.0:3380", "--listen-metrics-urls", "http://127.0.0.1:9090",
		"--initial-advertise-peer-urls", "http://10.0.0.2:3380,http://10.0.0.2:3381",
		"--initial-cluster", "m1=http://10.0.0.1:3380,m2=http://10.0.0.2:3380,m3=http://10.0.0.3:3380,m4=http://10.0.0.4:3380",
		"--initial-cluster-state", "existing", "--initial-cluster-token", "tok",
		"--heartbeat-interval", "100", "--election-timeout", "1000", "--snapshot-count", "5000")
	if code != 0 {
		t.Fatalf("master: exit %d: %s", code, errOut)
	}
	if got.AdvertisePeerURL != "http://10.0.0.2:3380" || len(got.InitialCluster) != 4 || got.InitialClusterState != "existing" ||
		got.ClusterToken != "tok" || got.HeartbeatTimeout != 100*time.Millisecond || got.ElectionTimeout != time.Second ||
		got.SnapshotThreshold != 5000 || len(got.AdvertiseClientURLs) != 2 || got.DataDir != "/d" ||
		!reflect.DeepEqual(got.ListenMetricsURLs, []string{"http://127.0.0.1:9090"}) {
		t.Fatalf("flags: %+v", got)
	}

	// --allow-even-cluster lets a 2-member bootstrap through.
	code, _, errOut = runCLI(t, "master", "--name", "a", "--initial-advertise-peer-urls", "http://127.0.0.1:1",
		"--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:2", "--allow-even-cluster")
	if code != 0 {
		t.Fatalf("--allow-even-cluster: exit %d: %s", code, errOut)
	}

	runStore = func(context.Context, raftstore.Config, apiOptions, *slog.Logger) error { return os.ErrPermission }
	if code, _, errOut = runCLI(t, "master"); code != 1 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("failing store: exit %d, %q; want 1", code, errOut)
	}
}

func TestSnapshotRestoreFlags(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "snap.db")
	os.WriteFile(snap, []byte("x"), 0o644)
	dataDir := filepath.Join(t.TempDir(), "m1.synod")
	args := []string{"snapshot", "restore", snap, "--data-dir", dataDir, "--name", "m1",
		"--initial-cluster", "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2382,m3=http://127.0.0.1:2384",
		"--initial-advertise-peer-urls", "http://127.0.0.1:2380", "--skip-hash-check"}

	if code, _, errOut := runCLI(t, args...); code != 1 || !strings.Contains(errOut, "snapshot") {
		t.Fatalf("restore of a junk file: exit %d, %q; want 1", code, errOut)
	}

	orig := restoreDataDir
	t.Cleanup(func() { restoreDataDir = orig })
	var gotDir, gotName, gotPeer, gotToken string
	var gotMembers []raftstore.Member
	var gotSkip bool
	restoreDataDir = func(file, dir, name, peer, token string, members []raftstore.Member, skip bool) error {
		gotDir, gotName, gotPeer, gotToken, gotMembers, gotSkip = dir, name, peer, token, members, skip
		return nil
	}
	if code, _, errOut := runCLI(t, args...); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, errOut)
	}
	if gotDir != dataDir || gotName != "m1" || gotPeer != "http://127.0.0.1:2380" || len(gotMembers) != 3 || !gotSkip || gotToken != "synod-cluster" {
		t.Fatalf("restoreDataDir got %q %q %q %q %v %t", gotDir, gotName, gotPeer, gotToken, gotMembers, gotSkip)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 32768: "32.8 kB", 2500000: "2.5 MB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
