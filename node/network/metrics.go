package network

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	setup       *prometheus.HistogramVec
	routes      prometheus.Gauge
	allocatedIP prometheus.GaugeFunc
}

// newMetrics creates the metrics and registers them with reg if non-nil.
func newMetrics(reg prometheus.Registerer, a *ipam) (*metrics, error) {
	m := &metrics{
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "synod_network_pod_setup_seconds",
			Help:    "Time to set up a pod's network (veth, address, routes).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
		}, []string{"result"}),
		routes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "synod_network_hostgw_routes",
			Help: "Host-gw routes to other workers' podCIDRs currently installed.",
		}),
		allocatedIP: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "synod_network_allocated_pod_ips",
			Help: "Pod IPs allocated from this node's podCIDR.",
		}, func() float64 { return float64(a.count()) }),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.setup, m.routes, m.allocatedIP} {
			// Registering twice (two Networks on one registry) is an error
			// rather than a panic.
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observeSetup(start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.setup.WithLabelValues(result).Observe(time.Since(start).Seconds())
}
