package leader

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exports leadership per lease name. Register it once per process.
type Metrics struct {
	reg         prometheus.Registerer
	transitions *prometheus.CounterVec

	mu      sync.Mutex
	tracked map[string]bool
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synod_leader_acquired_total",
			Help: "Times this process acquired the lease (its component became active).",
		}, []string{"name"}),
		tracked: map[string]bool{},
	}
	reg.MustRegister(m.transitions)
	return m
}

// Track exports leader_election_master_status{name} (Kubernetes' name for
// it) for one election. The value is read from active at scrape time, so it
// is exactly the fence's view: a leader that was paused past its renew
// deadline shows 0 the moment it wakes, before it has noticed the loss.
func (m *Metrics) Track(name string, active func() bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tracked[name] {
		return
	}
	m.tracked[name] = true
	m.transitions.WithLabelValues(name)
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "leader_election_master_status",
		Help:        "1 while this process holds the lease, renewed within the renew deadline, and its component is active; else 0.",
		ConstLabels: prometheus.Labels{"name": name},
	}, func() float64 {
		if active() {
			return 1
		}
		return 0
	}))
}

func (m *Metrics) started(name string) {
	if m != nil {
		m.transitions.WithLabelValues(name).Inc()
	}
}
