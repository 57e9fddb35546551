package check

import (
	"context"
	"crypto/tls"
	"time"

	"synod/chaos/history"
)

// Fault is one fault of the harness's timeline. Target names the masters it
// hit (MasterState.Name, comma-separated); a Kind containing "kill", or
// "restart", means they were SIGKILLed at Start, which is how the
// leadership check ends a term that logged no stop.
type Fault struct {
	Kind   string    `json:"kind"`
	Target string    `json:"target"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
}

// MasterState is what the checks need of one master after the final heal.
type MasterState struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"` // etcd client URL
	LogPath  string `json:"log_path"` // the master's slog text log (stderr)
}

// Input is everything the checks look at.
type Input struct {
	History *history.History
	Masters []MasterState
	Faults  []Fault
	// ReportDir receives porcupine's HTML visualisation when the history is
	// not linearizable; empty = not written.
	ReportDir string
	// SchedulerLease and ControllerLease say whether the masters ran the
	// scheduler / controller-manager (so their leadership is checked).
	SchedulerLease, ControllerLease bool
	// RecoveryFrom returns when a write first succeeded after t (the
	// workload's FirstWriteOKAfter); nil = computed from the history.
	RecoveryFrom func(t time.Time) (time.Time, bool)
	// LinearizabilityTimeout bounds porcupine; default 2m.
	LinearizabilityTimeout time.Duration
	// SettleTimeout bounds the wait for the healed cluster to take the
	// final write and for every member to catch up; default 60s.
	SettleTimeout time.Duration
	// EtcdTLS is the TLS config for the masters' https etcd endpoints (a
	// deployed cluster); nil = plain.
	EtcdTLS *tls.Config

	// replay is a member's replay of the key prefix, when there is one.
	replay []history.WatchEvent
}

// Result is one check's verdict.
type Result struct {
	Name     string `json:"name"`
	Pass     bool   `json:"pass"`
	Evidence string `json:"evidence"`
	Details  any    `json:"details,omitempty"`
}

// Run runs every check and returns their results in a fixed order:
// linearizability, revisions, no-lost-writes, convergence, watches,
// single-active-kube-scheduler, single-active-kube-controller-manager,
// kube-objects, recovery-writes, recovery-kube-scheduler (the leadership
// ones only when asked for). A check that cannot run (the cluster
// unreachable, a log missing) fails with the reason. Run writes one key
// itself, <prefix>~end/<nanos>, through any member: the healed cluster must
// take a write, and that write ends every member's replay.
func Run(ctx context.Context, in Input) []Result {
	if in.LinearizabilityTimeout <= 0 {
		in.LinearizabilityTimeout = 2 * time.Minute
	}
	if in.SettleTimeout <= 0 {
		in.SettleTimeout = 60 * time.Second
	}
	if in.History == nil {
		in.History = &history.History{}
	}
	// The store's final state and replays first: the linearizability
	// check resolves unknown writes with them.
	var store []Result
	if len(in.Masters) == 0 {
		store = []Result{{Name: "no-lost-writes", Evidence: "no masters to read the final state from"},
			{Name: "convergence", Evidence: "no masters to compare"}}
	} else if members, _, err := collectMembers(ctx, in); err != nil {
		store = []Result{{Name: "no-lost-writes", Evidence: err.Error()}, {Name: "convergence", Evidence: err.Error()}}
	} else {
		store = []Result{checkLostWrites(in.History, members), checkConvergence(members)}
		for _, m := range members {
			if m.ReplayErr == "" && m.Final != nil {
				in.replay = m.Events
				break
			}
		}
	}
	out := []Result{checkLinearizability(in), checkRevisions(in)}
	out = append(out, store...)
	out = append(out, checkWatches(in.History, in.replay))

	if in.SchedulerLease || in.ControllerLease {
		terms, err := readIntervals(in.Masters, in.Faults)
		for _, c := range []struct {
			on   bool
			name string
		}{{in.SchedulerLease, SchedulerLease}, {in.ControllerLease, ControllerManagerLease}} {
			if !c.on {
				continue
			}
			if err != nil {
				out = append(out, Result{Name: "single-active-" + c.name, Evidence: err.Error()})
			} else {
				out = append(out, checkLeadership(c.name, terms))
			}
		}
		out = append(out, checkKube(in.History), checkWriteRecovery(in))
		if in.SchedulerLease {
			if err != nil {
				out = append(out, Result{Name: "recovery-" + SchedulerLease, Evidence: err.Error()})
			} else {
				out = append(out, checkComponentRecovery(SchedulerLease, terms, in.Faults))
			}
		}
		return out
	}
	return append(out, checkKube(in.History), checkWriteRecovery(in))
}

// The components' Lease names, which their log records carry as component=.
const (
	SchedulerLease         = "kube-scheduler"
	ControllerManagerLease = "kube-controller-manager"
)

// Passed reports whether every result passed.
func Passed(rs []Result) bool {
	for _, r := range rs {
		if !r.Pass {
			return false
		}
	}
	return len(rs) > 0
}
