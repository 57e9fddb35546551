package raftstore

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are this member's Prometheus metrics, on a registry of its own (no
// global state: several members may share a process in tests).
type metrics struct {
	reg             *prometheus.Registry
	leaderChanges   prometheus.Counter
	proposals       *prometheus.CounterVec // by type and result
	forwarded       prometheus.Counter
	leasesExpired   prometheus.Counter
	watchersCurrent prometheus.Gauge
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "synod_raft_leader_changes_seen_total",
			Help: "Leadership changes this member has seen."}),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "synod_proposals_total",
			Help: "Write requests by type and result (ok, rejected: applied with an error, failed: outcome unknown or not applied)."}, []string{"type", "result"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{Name: "synod_proposals_forwarded_total",
			Help: "Write requests this member forwarded to the leader."}),
		leasesExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "synod_leases_expired_total",
			Help: "Leases this member, as leader, revoked on expiry."}),
		watchersCurrent: prometheus.NewGauge(prometheus.GaugeOpts{Name: "synod_watchers",
			Help: "Watchers currently served by this member."}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.leaderChanges, m.proposals, m.forwarded, m.leasesExpired, m.watchersCurrent,
		gauge("synod_raft_is_leader", "1 if this member is the raft leader.", func() float64 { return b2f(s.raft.State() == raft.Leader) }),
		gauge("synod_raft_has_leader", "1 if this member knows a leader.", func() float64 { _, id := s.raft.LeaderWithID(); return b2f(id != "") }),
		gauge("synod_raft_term", "Current raft term.", func() float64 { return float64(s.raft.CurrentTerm()) }),
		gauge("synod_raft_commit_index", "Raft commit index.", func() float64 { return float64(s.raft.CommitIndex()) }),
		gauge("synod_raft_applied_index", "Raft applied index.", func() float64 { return float64(s.raft.AppliedIndex()) }),
		gauge("synod_mvcc_revision", "Current store revision.", func() float64 { return float64(s.fsm.kv.Rev()) }),
		gauge("synod_mvcc_compact_revision", "Last compaction revision.", func() float64 { return float64(s.fsm.kv.CompactRev()) }),
		gauge("synod_db_size_bytes", "Raft log plus newest snapshot on disk.", func() float64 { return float64(s.dbSize()) }),
	)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// observeProposal counts one write by its outcome.
func (m *metrics) observeProposal(t msgType, err error, applied bool) {
	result := "ok"
	switch {
	case err != nil && applied:
		result = "rejected"
	case err != nil:
		result = "failed"
	}
	m.proposals.WithLabelValues(t.String(), result).Inc()
}

// serveMetrics serves /metrics, /health and /debug/pprof on the metrics URLs
// (etcd's --listen-metrics-urls).
func (s *Server) serveMetrics() error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/health", s.handleHealth)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for _, u := range s.cfg.ListenMetricsURLs {
		host, err := parseURLHost(u)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", host)
		if err != nil {
			return fmt.Errorf("listen on metrics URL %s: %w", u, err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.httpSrvs = append(s.httpSrvs, srv)
		go srv.Serve(ln)
	}
	return nil
}

// handleHealth answers like etcd's /health: healthy when a leader is known.
func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	_, id := s.raft.LeaderWithID()
	resp := map[string]string{"health": "true", "reason": ""}
	code := http.StatusOK
	if id == "" {
		resp = map[string]string{"health": "false", "reason": "RAFT NO LEADER"}
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(resp)
}
