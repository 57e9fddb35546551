package runtime

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts runtime operations and how long they take; the kubelet's
// pod startup latency is mostly CreateContainer + StartContainer.
type metrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synod_runtime_operations_total",
			Help: "Container runtime operations by operation and result (ok or error).",
		}, []string{"operation", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "synod_runtime_operation_duration_seconds",
			Help:    "Duration of container runtime operations.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"operation"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.ops, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("runtime: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// observe records one operation; use as `defer r.metrics.observe("op", time.Now(), &err)`.
func (m *metrics) observe(op string, start time.Time, err *error) {
	result := "ok"
	if err != nil && *err != nil {
		result = "error"
	}
	m.ops.WithLabelValues(op, result).Inc()
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
