package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a fault kind, as named in --faults.
type Kind string

// The fault kinds. Each one is healed before the next step starts.
const (
	// KindKill SIGKILLs one master picked by the seed and starts it again
	// after the hold.
	KindKill Kind = "kill"
	// KindLeaderKill SIGKILLs the raft leader and starts it again after
	// the hold.
	KindLeaderKill Kind = "leader-kill"
	// KindPause SIGSTOPs one master (the leader on some steps) and
	// SIGCONTs it after the hold.
	KindPause Kind = "pause"
	// KindPartition cuts one master (the leader on some steps) off from
	// every other master with iptables DROP rules inside its namespace;
	// clients on the host still reach it, so stale answers would show.
	KindPartition Kind = "partition"
	// KindSplit splits the masters into a minority and a majority that
	// cannot reach each other (the leader on the minority side on some
	// steps).
	KindSplit Kind = "split"
	// KindMajorityKill SIGKILLs a majority of the masters, so the cluster
	// must stop acknowledging writes, and starts them again after the hold.
	KindMajorityKill Kind = "majority-kill"
	// KindComponentKill SIGKILLs the master holding the kube-scheduler or
	// the kube-controller-manager Lease and starts it again after the hold.
	KindComponentKill Kind = "component-kill"
	// KindRestart SIGKILLs every master at once and starts them all again.
	KindRestart Kind = "restart"
)

// Kinds lists every fault kind in the canonical order schedules use.
var Kinds = []Kind{KindKill, KindLeaderKill, KindPause, KindPartition, KindSplit, KindMajorityKill, KindComponentKill, KindRestart}

// KindHelp describes each kind for `synod chaos run --help`.
var KindHelp = map[Kind]string{
	KindKill:          "SIGKILL a random master, start it again after the hold",
	KindLeaderKill:    "SIGKILL the raft leader, start it again after the hold",
	KindPause:         "SIGSTOP a master (sometimes the leader), SIGCONT after the hold",
	KindPartition:     "cut one master (sometimes the leader) off from the other masters (iptables DROP in its namespace), heal after the hold",
	KindSplit:         "split the masters into a minority (sometimes with the leader) and a majority, heal after the hold",
	KindMajorityKill:  "SIGKILL a majority (writes must stop), start them again after the hold",
	KindComponentKill: "SIGKILL the master holding the kube-scheduler or kube-controller-manager Lease, start it again",
	KindRestart:       "SIGKILL every master at once and start them all again",
}

// ParseKinds parses a --faults value: comma-separated kind names, or "all".
// The result is deduplicated and in canonical order, so that the schedule
// does not depend on how the list was spelled.
func ParseKinds(s string) ([]Kind, error) {
	seen := map[Kind]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "all" {
			for _, k := range Kinds {
				seen[k] = true
			}
			continue
		}
		if !slices.Contains(Kinds, Kind(f)) {
			return nil, fmt.Errorf("unknown fault %q (known: %s, or all)", f, joinKinds(Kinds))
		}
		seen[Kind(f)] = true
	}
	var out []Kind
	for _, k := range Kinds {
		if seen[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no fault kinds given")
	}
	return out, nil
}

func joinKinds(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// Step is one fault of a schedule. Who it hits is fixed by the seed except
// where it names the leader or a Lease holder, which only the running
// cluster can tell.
type Step struct {
	N    int           `json:"n"`    // from 1
	At   time.Duration `json:"at"`   // planned offset from the start of the fault phase
	Kind Kind          `json:"kind"` // what to do
	Hold time.Duration `json:"hold"` // how long the fault lasts before it is healed
	// Leader: the step targets the raft leader (pause, partition), or
	// puts it on the minority side (split).
	Leader bool `json:"leader,omitempty"`
	// Members are master indexes (from 0) picked by the seed: the victim
	// of kill/pause/partition, the victims of majority-kill, and for a
	// split the order in which the minority is filled (after the leader
	// when Leader is set, skipping it otherwise).
	Members []int `json:"members,omitempty"`
	// Component is the Lease whose holder component-kill kills.
	Component string `json:"component,omitempty"`
}

// Lease names of the components (namespace kube-system).
const (
	LeaseScheduler  = "kube-scheduler"
	LeaseController = "kube-controller-manager"
)

// ScheduleConfig is what a schedule is a function of.
type ScheduleConfig struct {
	Seed     int64
	Masters  int
	Kinds    []Kind
	Interval time.Duration // between the starts of two steps
	Count    int           // steps; 0 = Duration / Interval
	Duration time.Duration // length of the fault phase when Count is 0
}

// Steps returns the number of steps the config asks for.
func (c ScheduleConfig) Steps() int {
	if c.Count > 0 {
		return c.Count
	}
	if c.Interval <= 0 {
		return 0
	}
	return max(1, int(c.Duration/c.Interval))
}

// HoldRange is the range a step's hold is drawn from: a fifth to a half of
// the interval, so that the cluster has time to recover before the next.
func (c ScheduleConfig) HoldRange() (lo, hi time.Duration) {
	return c.Interval / 5, c.Interval / 2
}

// Schedule returns the steps of a run. It is a pure function of c: the same
// seed and flags give the same schedule.
func Schedule(c ScheduleConfig) []Step {
	// PCG with fixed streams: its output is specified, unlike the
	// global source's, so a seed replays across Go releases.
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x73796e6f64)) // "synod"
	lo, hi := c.HoldRange()
	n := c.Steps()
	steps := make([]Step, 0, n)
	for i := 0; i < n && len(c.Kinds) > 0; i++ {
		s := Step{N: i + 1, At: time.Duration(i) * c.Interval, Kind: c.Kinds[rng.IntN(len(c.Kinds))]}
		s.Hold = lo
		if hi > lo {
			// Whole 100ms so the printed schedule is exact.
			s.Hold = lo + time.Duration(rng.Int64N(int64(hi-lo)/int64(100*time.Millisecond)+1))*100*time.Millisecond
		}
		perm := rng.Perm(c.Masters)
		coin := rng.IntN(2) == 0
		switch s.Kind {
		case KindKill:
			s.Members = perm[:1]
		case KindPause, KindPartition:
			s.Leader = coin
			if !coin {
				s.Members = perm[:1]
			}
		case KindSplit:
			// The whole permutation: the minority is filled from it
			// in order, around or without the leader.
			s.Leader = coin
			s.Members = perm
		case KindMajorityKill:
			s.Members = perm[:c.Masters/2+1]
			slices.Sort(s.Members)
		case KindComponentKill:
			s.Component = LeaseScheduler
			if coin {
				s.Component = LeaseController
			}
		}
		steps = append(steps, s)
	}
	return steps
}

// String describes the step for the printed schedule.
func (s Step) String() string {
	var target string
	switch s.Kind {
	case KindKill, KindPause, KindPartition:
		if s.Leader {
			target = "leader"
		} else {
			target = memberName(s.Members[0])
		}
	case KindLeaderKill:
		target = "leader"
	case KindSplit:
		names := make([]string, len(s.Members))
		for i, m := range s.Members {
			names[i] = memberName(m)
		}
		with := "without"
		if s.Leader {
			with = "with"
		}
		target = fmt.Sprintf("minority of %d %s the leader (picked in order %s)", (len(s.Members)-1)/2, with, strings.Join(names, ","))
	case KindMajorityKill:
		names := make([]string, len(s.Members))
		for i, m := range s.Members {
			names[i] = memberName(m)
		}
		target = strings.Join(names, ",")
	case KindComponentKill:
		target = s.Component + " holder"
	case KindRestart:
		target = "all"
	}
	return fmt.Sprintf("#%d at %s: %s %s for %s", s.N, s.At, s.Kind, target, s.Hold)
}

// memberName is the name of master index i (from 0).
func memberName(i int) string { return fmt.Sprintf("m%d", i+1) }

// FormatSchedule renders a schedule, one step a line.
func FormatSchedule(steps []Step) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}
