package gossip

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics reads the pool at scrape time, so suspicion (which memberlist
// reports through no event) is counted too.
type metrics struct {
	reg     prometheus.Registerer
	p       *Pool
	members *prometheus.Desc
	health  *prometheus.Desc
}

func registerMetrics(reg prometheus.Registerer, p *Pool) (*metrics, error) {
	m := &metrics{
		reg: reg,
		p:   p,
		members: prometheus.NewDesc("synod_gossip_members",
			"Members of the gossip pool as this member sees them, by state (CLI members excluded).", []string{"state"}, nil),
		health: prometheus.NewDesc("synod_gossip_health_score",
			"memberlist's awareness score of this member: 0 is healthy, higher means it is slow to answer probes.", nil, nil),
	}
	if err := reg.Register(m); err != nil {
		return nil, fmt.Errorf("gossip: register metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) unregister() { m.reg.Unregister(m) }

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.members
	ch <- m.health
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	counts := map[State]int{StateAlive: 0, StateSuspect: 0, StateDead: 0, StateLeft: 0}
	for _, mem := range m.p.Members() {
		counts[mem.State]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(m.members, prometheus.GaugeValue, float64(n), string(s))
	}
	ch <- prometheus.MustNewConstMetric(m.health, prometheus.GaugeValue, float64(m.p.ml.Load().GetHealthScore()))
}
