package leader

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts leadership per lease name. Register it once per process.
type Metrics struct {
	active      *prometheus.GaugeVec
	transitions *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		// Same name and meaning as Kubernetes' leader-election gauge.
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "leader_election_master_status",
			Help: "1 while this process holds the lease and its component is active, else 0.",
		}, []string{"name"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synod_leader_acquired_total",
			Help: "Times this process acquired the lease (its component became active).",
		}, []string{"name"}),
	}
	reg.MustRegister(m.active, m.transitions)
	return m
}

// Track makes the name appear (as inactive) before any election result.
func (m *Metrics) Track(name string) {
	if m != nil {
		m.active.WithLabelValues(name).Set(0)
		m.transitions.WithLabelValues(name)
	}
}

func (m *Metrics) started(name string) {
	if m != nil {
		m.active.WithLabelValues(name).Set(1)
		m.transitions.WithLabelValues(name).Inc()
	}
}

func (m *Metrics) stopped(name string) {
	if m != nil {
		m.active.WithLabelValues(name).Set(0)
	}
}
