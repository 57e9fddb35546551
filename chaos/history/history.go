package history

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Unknown is the Return time of an operation whose outcome is unknown (a
// timeout or a broken connection on a write): like etcd's robustness tests,
// the checks treat it as possibly having taken effect at any time after Call.
const Unknown int64 = math.MaxInt64

// Operation kinds.
const (
	KindPut    = "put"
	KindGet    = "get"
	KindCAS    = "cas"
	KindDelete = "delete"
)

// Op is one etcd-API operation as seen by one client.
type Op struct {
	Client int    `json:"client"`
	Kind   string `json:"kind"` // KindPut, KindGet, KindCAS, KindDelete
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"` // put / cas: the value written
	// ExpectModRev is the mod revision a cas compares the key's with (0 =
	// the key must not exist).
	ExpectModRev int64 `json:"expect_mod_rev,omitempty"`

	Call   int64 `json:"call"`   // unix nanos
	Return int64 `json:"return"` // unix nanos; Unknown when the outcome is unknown

	OK      bool   `json:"ok"`                // the server answered with success
	Unknown bool   `json:"unknown,omitempty"` // a write with no answer: may or may not have happened
	Err     string `json:"err,omitempty"`
	// Ended is when the client gave up on an op (Return is Unknown then,
	// or the op failed); for timelines only.
	Ended int64 `json:"ended,omitempty"`
	// Endpoint is the member (or members) the client sent the op to.
	Endpoint string `json:"endpoint,omitempty"`

	Revision  int64  `json:"revision,omitempty"` // response header revision
	Found     bool   `json:"found,omitempty"`    // get: the key existed; delete: a key was deleted
	GotValue  string `json:"got_value,omitempty"`
	GotModRev int64  `json:"got_mod_rev,omitempty"` // get: the key's mod revision
	Succeeded bool   `json:"succeeded,omitempty"`   // cas: the compare held
}

// IsWrite reports whether the op may change the store.
func (o Op) IsWrite() bool { return o.Kind != KindGet }

// WatchEvent is one event one watcher received.
type WatchEvent struct {
	Watcher  int    `json:"watcher"`
	Key      string `json:"key"`
	Type     string `json:"type"` // "PUT" or "DELETE"
	Value    string `json:"value,omitempty"`
	ModRev   int64  `json:"mod_rev"`  // the event's revision (kv.ModRevision)
	Revision int64  `json:"revision"` // the response header revision
	At       int64  `json:"at"`       // unix nanos when received
}

// WatchResume records a watcher re-creating its watch after the stream
// ended with an error: it asked for events from FromRev (= last seen + 1).
type WatchResume struct {
	Watcher int    `json:"watcher"`
	FromRev int64  `json:"from_rev"`
	At      int64  `json:"at"`
	Reason  string `json:"reason,omitempty"`
	// Compacted is set when the server refused FromRev because it was
	// compacted; the watcher then restarted at CompactRev and a gap before
	// it is not a watch bug.
	Compacted  bool  `json:"compacted,omitempty"`
	CompactRev int64 `json:"compact_rev,omitempty"`
}

// Watcher describes one watcher: what it watched, from which revision.
type Watcher struct {
	Watcher int    `json:"watcher"`
	Prefix  string `json:"prefix"`
	// All: the watcher watched the whole keyspace (Prefix is then only the
	// part whose values it recorded), so it must see every revision.
	All      bool  `json:"all,omitempty"`
	StartRev int64 `json:"start_rev"` // the first revision it asked for
	// LastRev is the last revision it received before it was stopped.
	LastRev int64 `json:"last_rev"`
}

// KubeOp is one Kubernetes-API operation as seen by one client.
type KubeOp struct {
	Client   int    `json:"client"`
	Verb     string `json:"verb"`     // "create", "update", "delete", "scale"
	Resource string `json:"resource"` // "configmaps", "deployments"
	Name     string `json:"name"`
	// Data is the object's content the op wrote (the ConfigMap's "v" data
	// entry, the Deployment's replica count).
	Data            string `json:"data,omitempty"`
	Call            int64  `json:"call"`
	Return          int64  `json:"return"`
	OK              bool   `json:"ok"`
	Unknown         bool   `json:"unknown,omitempty"`
	Err             string `json:"err,omitempty"`
	ResourceVersion string `json:"resource_version,omitempty"`
}

// KubeObject is one workload object as one apiserver returned it after the
// run.
type KubeObject struct {
	Server   string `json:"server"`
	Resource string `json:"resource"`
	Name     string `json:"name"`
	Data     string `json:"data,omitempty"`
}

// KubeFinal is what every apiserver returned for the workload's objects
// after the run.
type KubeFinal struct {
	Server  string       `json:"server"`
	Objects []KubeObject `json:"objects"`
	Err     string       `json:"err,omitempty"` // the final read failed
}

// History is everything the workload recorded.
type History struct {
	// StartRev is the store's revision before the first op; the workload's
	// keys did not exist then.
	StartRev     int64         `json:"start_rev"`
	Ops          []Op          `json:"ops"`
	Watchers     []Watcher     `json:"watchers,omitempty"`
	Watches      []WatchEvent  `json:"watches"`
	WatchResumes []WatchResume `json:"watch_resumes"`
	Kube         []KubeOp      `json:"kube"`
	KubeFinal    []KubeFinal   `json:"kube_final,omitempty"`
	// KeyPrefix is the prefix all workload keys share (the watchers watch it).
	KeyPrefix string `json:"key_prefix,omitempty"`
	// KubeNamespace is where the Kubernetes-API clients' objects live.
	KubeNamespace string `json:"kube_namespace,omitempty"`
}

// WriteDir writes ops.json, watch.json and kube.json into dir.
func (h *History) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	files := []struct {
		name string
		v    any
	}{
		{"ops.json", opsFile{h.KeyPrefix, h.StartRev, h.Ops}},
		{"watch.json", watchFile{h.Watchers, h.Watches, h.WatchResumes}},
		{"kube.json", kubeFile{h.KubeNamespace, h.Kube, h.KubeFinal}},
	}
	for _, f := range files {
		b, err := json.MarshalIndent(f.v, "", " ")
		if err != nil {
			return fmt.Errorf("history: encode %s: %w", f.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), b, 0o644); err != nil {
			return fmt.Errorf("history: write %s: %w", f.name, err)
		}
	}
	return nil
}

type opsFile struct {
	KeyPrefix string `json:"key_prefix"`
	StartRev  int64  `json:"start_rev"`
	Ops       []Op   `json:"ops"`
}

type watchFile struct {
	Watchers []Watcher     `json:"watchers"`
	Events   []WatchEvent  `json:"events"`
	Resumes  []WatchResume `json:"resumes"`
}

type kubeFile struct {
	Namespace string      `json:"namespace"`
	Ops       []KubeOp    `json:"ops"`
	Final     []KubeFinal `json:"final"`
}

// ReadDir reads a history WriteDir wrote.
func ReadDir(dir string) (*History, error) {
	var (
		ops opsFile
		w   watchFile
		k   kubeFile
	)
	for name, v := range map[string]any{"ops.json": &ops, "watch.json": &w, "kube.json": &k} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("history: decode %s: %w", name, err)
		}
	}
	return &History{KeyPrefix: ops.KeyPrefix, StartRev: ops.StartRev, Ops: ops.Ops,
		Watchers: w.Watchers, Watches: w.Events, WatchResumes: w.Resumes,
		KubeNamespace: k.Namespace, Kube: k.Ops, KubeFinal: k.Final}, nil
}
