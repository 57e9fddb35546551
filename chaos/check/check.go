package check

import (
	"context"
	"time"

	"synod/chaos/history"
)

// Fault is one fault of the harness's timeline.
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
}

// Result is one check's verdict.
type Result struct {
	Name     string `json:"name"`
	Pass     bool   `json:"pass"`
	Evidence string `json:"evidence"`
	Details  any    `json:"details,omitempty"`
}

// Run runs every check and returns their results in a fixed order.
func Run(ctx context.Context, in Input) []Result {
	return nil
}
