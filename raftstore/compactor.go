package raftstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Auto-compaction, as etcd's --auto-compaction-mode/--auto-compaction-retention:
// the history is kept in memory, so a store nobody compacts grows without
// bound. kube-apiserver compacts on its own; other users can ask the leader
// to do it.
const (
	CompactionPeriodic = "periodic" // keep the history of the last retention (a duration)
	CompactionRevision = "revision" // keep the last retention revisions
)

// compactionPolicy is a parsed auto-compaction setting.
type compactionPolicy struct {
	period    time.Duration // periodic mode
	revisions int64         // revision mode
}

// parseCompaction reads etcd's flags: periodic retention is a duration, or a
// bare number of hours; revision retention is a number of revisions. An empty
// or zero retention disables auto-compaction.
func parseCompaction(mode, retention string) (compactionPolicy, error) {
	if retention == "" || retention == "0" {
		return compactionPolicy{}, nil
	}
	switch mode {
	case "", CompactionPeriodic:
		if h, err := strconv.ParseFloat(retention, 64); err == nil && h > 0 {
			return compactionPolicy{period: time.Duration(h * float64(time.Hour))}, nil
		}
		d, err := time.ParseDuration(retention)
		if err != nil || d <= 0 {
			return compactionPolicy{}, fmt.Errorf("--auto-compaction-retention %q: want a duration such as 30m or a number of hours", retention)
		}
		return compactionPolicy{period: d}, nil
	case CompactionRevision:
		n, err := strconv.ParseInt(retention, 10, 64)
		if err != nil || n <= 0 {
			return compactionPolicy{}, fmt.Errorf("--auto-compaction-retention %q: want a positive number of revisions in revision mode", retention)
		}
		return compactionPolicy{revisions: n}, nil
	}
	return compactionPolicy{}, fmt.Errorf("--auto-compaction-mode must be %q or %q, not %q", CompactionPeriodic, CompactionRevision, mode)
}

// compactLoop runs on every member and acts only while it leads.
func (s *Server) compactLoop(p compactionPolicy) {
	tick := 5 * time.Second
	if p.period > 0 && p.period/10 < tick {
		tick = max(p.period/10, 100*time.Millisecond)
	}
	type sample struct {
		at  time.Time
		rev int64
	}
	var samples []sample // periodic mode: revisions seen over the retention window
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.stopCh:
			return
		case <-t.C:
		}
		if s.raft.State() != raft.Leader {
			samples = nil
			continue
		}
		now, rev := time.Now(), s.fsm.kv.Rev()
		target := int64(0)
		if p.revisions > 0 {
			target = rev - p.revisions
		} else {
			samples = append(samples, sample{now, rev})
			// Compact to the newest revision that is older than the window.
			i := 0
			for i < len(samples) && now.Sub(samples[i].at) >= p.period {
				target = samples[i].rev
				i++
			}
			if i > 0 {
				samples = samples[i-1:]
			}
		}
		if target <= s.fsm.kv.CompactRev() || target <= 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
		_, err := s.propose(ctx, msgCompact, &pb.CompactionRequest{Revision: target})
		cancel()
		if err != nil {
			s.log.Warn("auto-compaction failed", "revision", target, "err", err)
			continue
		}
		s.log.Info("auto-compacted", "revision", target)
	}
}
