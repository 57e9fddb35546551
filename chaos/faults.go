package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"synod/chaos/check"
)

// injection is the outcome of one step.
type injection struct {
	fault check.Fault
	// noQuorum is, for majority-kill, the window in which a majority was
	// dead: no write invoked in it may be acknowledged before it ends.
	noQuorum *window
	// leader is the raft leader just before the fault ("" if unknown):
	// faults that hit it cost an election, the others should cost little.
	leader string
}

// window is a span of time.
type window struct{ from, to time.Time }

// inject applies step s to the cluster, holds it, heals it and returns the
// fault's record. The step's leader or Lease holder is resolved now.
func (r *runner) inject(ctx context.Context, s Step) (injection, error) {
	c := r.cluster
	var (
		victims []int // masters to signal (kill, pause)
		side    []int // masters to isolate (partition, split)
		desc    string
	)
	leader := func() (int, error) {
		l, err := c.Leader(ctx)
		if err != nil {
			return -1, fmt.Errorf("find the leader: %w", err)
		}
		return l, nil
	}
	switch s.Kind {
	case KindKill:
		victims = s.Members[:1]
	case KindLeaderKill:
		l, err := leader()
		if err != nil {
			return injection{}, err
		}
		victims = []int{l}
	case KindPause, KindPartition:
		v := -1
		if s.Leader {
			l, err := leader()
			if err != nil {
				return injection{}, err
			}
			v = l
		} else {
			v = s.Members[0]
		}
		if s.Kind == KindPause {
			victims = []int{v}
		} else {
			side = []int{v}
		}
	case KindSplit:
		l, err := leader()
		if err != nil {
			return injection{}, err
		}
		size := (c.Size() - 1) / 2
		if s.Leader {
			side = append(side, l)
		}
		for _, m := range s.Members {
			if len(side) < size && m != l {
				side = append(side, m)
			}
		}
	case KindMajorityKill:
		victims = s.Members
	case KindComponentKill:
		h, id, err := r.currentHolder(ctx, s.Component)
		if err != nil {
			return injection{}, err
		}
		victims = []int{h}
		desc = fmt.Sprintf(" (holder %s)", id)
	case KindRestart:
		for i := range c.Size() {
			victims = append(victims, i)
		}
	default:
		return injection{}, fmt.Errorf("unknown fault kind %q", s.Kind)
	}

	var inj injection
	inj.fault.Kind = string(s.Kind)
	if l, err := c.Leader(ctx); err == nil {
		inj.leader = c.Name(l)
		desc += " (leader " + inj.leader + ")"
	}
	targets := victims
	if side != nil {
		targets = side
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = c.Name(t)
	}
	inj.fault.Target = strings.Join(names, ",")
	if s.Kind == KindSplit {
		var rest []string
		for i := range c.Size() {
			if !slices.Contains(side, i) {
				rest = append(rest, c.Name(i))
			}
		}
		inj.fault.Target += "|" + strings.Join(rest, ",")
	}
	r.logf("fault %d/%d: %s %s for %s%s", s.N, len(r.steps), s.Kind, inj.fault.Target, s.Hold, desc)

	// Start is when the fault takes effect: before a signal (delivered at
	// once), after a partition's rules are in (programming them takes a
	// few tens of milliseconds, during which the cluster is whole).
	inj.fault.Start = time.Now()
	var applyErr error
	switch s.Kind {
	case KindPause:
		applyErr = c.Signal(victims[0], syscall.SIGSTOP)
	case KindPartition, KindSplit:
		applyErr = c.Isolate(ctx, side)
		inj.fault.Start = time.Now()
	default:
		applyErr = c.SignalAll(victims, syscall.SIGKILL)
	}
	if applyErr == nil {
		if s.Kind == KindMajorityKill {
			// Every victim is reaped by now (Signal waits for it).
			inj.noQuorum = &window{from: time.Now()}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(inj.fault.Start.Add(s.Hold))):
		}
	}

	// Heal: undo exactly what was done (HealAll at the end catches the
	// rest). Killed masters start again with their data.
	if inj.noQuorum != nil {
		inj.noQuorum.to = time.Now()
	}
	var healErr error
	switch s.Kind {
	case KindPause:
		healErr = c.Signal(victims[0], syscall.SIGCONT)
	case KindPartition, KindSplit:
		healErr = c.HealNetwork(context.WithoutCancel(ctx))
	default:
		if ctx.Err() == nil {
			for _, v := range victims {
				if !c.Running(v) {
					healErr = errors.Join(healErr, c.Start(v))
				}
			}
		}
	}
	inj.fault.End = time.Now()
	return inj, errors.Join(applyErr, healErr)
}

// currentHolder waits (up to 15s) until Lease name is held by a running
// master's current process, so that the kill hits the active component and
// not a master whose earlier process held the Lease before a restart.
func (r *runner) currentHolder(ctx context.Context, name string) (int, string, error) {
	c := r.cluster
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		h, id, err := c.LeaseHolder(ctx, name)
		if err == nil {
			if pid := c.PID(h); pid != 0 && strings.HasSuffix(id, fmt.Sprintf("_%d", pid)) {
				return h, id, nil
			}
			err = fmt.Errorf("lease %s holder %q is not a running master's current process", name, id)
		}
		select {
		case <-ctx.Done():
			return -1, "", fmt.Errorf("%w (waited %s)", err, 15*time.Second)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
