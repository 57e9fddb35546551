package history

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteDirReadDirRoundTrip(t *testing.T) {
	h := &History{KeyPrefix: "/p/", StartRev: 7,
		Ops: []Op{{Client: 1, Kind: KindPut, Key: "/p/a", Value: "1.1", Call: 1, Return: Unknown, Unknown: true, Err: "timeout"},
			{Client: 2, Kind: KindGet, Key: "/p/a", Call: 2, Return: 3, OK: true, Revision: 8, Found: true, GotValue: "1.1", GotModRev: 8}},
		Watchers:     []Watcher{{Watcher: 0, Prefix: "/p/", All: true, StartRev: 8, LastRev: 8}},
		Watches:      []WatchEvent{{Watcher: 0, Key: "/p/a", Type: "PUT", Value: "1.1", ModRev: 8, Revision: 8, At: 4}},
		WatchResumes: []WatchResume{{Watcher: 0, FromRev: 9, At: 5, Reason: "no leader"}},
		Kube:         []KubeOp{{Client: 0, Verb: "create", Resource: "configmaps", Name: "cm", Data: "x", Call: 1, Return: 2, OK: true}},
		KubeFinal:    []KubeFinal{{Server: "https://a", Objects: []KubeObject{{Server: "https://a", Resource: "configmaps", Name: "cm", Data: "x"}}}},
	}
	dir := t.TempDir()
	if err := h.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ops.json", "watch.json", "kube.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	back, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.StartRev != 7 || back.KeyPrefix != "/p/" || len(back.Ops) != 2 || back.Ops[0].Return != Unknown || !back.Ops[0].Unknown ||
		back.Ops[1].GotValue != "1.1" || len(back.Watches) != 1 || len(back.WatchResumes) != 1 || !back.Watchers[0].All ||
		len(back.Kube) != 1 || len(back.KubeFinal) != 1 || back.KubeFinal[0].Objects[0].Data != "x" {
		t.Errorf("round trip changed the history: %+v", back)
	}
	if _, err := ReadDir(t.TempDir()); err == nil {
		t.Error("ReadDir of an empty directory succeeded")
	}
}
