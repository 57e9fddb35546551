package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics uses kube-proxy's metric names, so its dashboards apply.
type metrics struct {
	syncDuration  prometheus.Histogram
	lastSync      prometheus.Gauge
	rules         *prometheus.GaugeVec
	syncErrors    prometheus.Counter
	restoreWrites prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubeproxy_sync_proxy_rules_duration_seconds",
			Help:    "Time one sync of the proxy rules took (build and iptables-restore).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
			Help: "Unix time of the last successful sync of the proxy rules.",
		}),
		rules: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_iptables_total",
			Help: "Rules the proxier has programmed, per table.",
		}, []string{"table"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_errors_total",
			Help: "Syncs of the proxy rules that failed (retried with a full sync).",
		}),
		restoreWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_restores_total",
			Help: "iptables-restore invocations (one per sync).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.syncDuration, m.lastSync, m.rules, m.syncErrors, m.restoreWrites} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
