package kubelet

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	workers         prometheus.Gauge
	syncs           *prometheus.HistogramVec
	containerStarts *prometheus.CounterVec
	probes          *prometheus.CounterVec
	nodeStatus      *prometheus.CounterVec
	leases          *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "synod_kubelet_pod_workers", Help: "Pods with a worker on this node."}),
		syncs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "synod_kubelet_pod_sync_duration_seconds", Help: "Time of one pod worker sync.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"result"}),
		containerStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synod_kubelet_container_starts_total", Help: "Container start attempts by result."}, []string{"result"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synod_kubelet_probes_total", Help: "Probe runs by probe type and result."}, []string{"probe", "result"}),
		nodeStatus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synod_kubelet_node_status_updates_total", Help: "Node status posts by result."}, []string{"result"}),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synod_kubelet_lease_renewals_total", Help: "Node lease renewals by result."}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.workers, m.syncs, m.containerStarts, m.probes, m.nodeStatus, m.leases} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return m, nil
}
