package apilb

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg          prometheus.Registerer
	healthy      *prometheus.GaugeVec
	active       *prometheus.GaugeVec
	connections  *prometheus.CounterVec
	dialFailures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "synod_apilb_server_healthy",
			Help: "1 if the apiserver passed its last health check (or is new), 0 if not."}, []string{"server"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "synod_apilb_connections_active",
			Help: "Connections proxied to the apiserver now."}, []string{"server"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "synod_apilb_connections_total",
			Help: "Connections proxied to the apiserver."}, []string{"server"}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "synod_apilb_dial_failures_total",
			Help: "Failed dials to the apiserver (the connection then tried another)."}, []string{"server"}),
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return nil, fmt.Errorf("apilb: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.healthy, m.active, m.connections, m.dialFailures}
}

func (m *metrics) unregister() {
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}

func (m *metrics) setHealthy(server string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.healthy.WithLabelValues(server).Set(v)
}

// forget drops a removed server's series.
func (m *metrics) forget(server string) {
	m.healthy.DeleteLabelValues(server)
	m.active.DeleteLabelValues(server)
	m.connections.DeleteLabelValues(server)
	m.dialFailures.DeleteLabelValues(server)
}
