package node

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's Prometheus metrics. Labels never carry query text,
// analysts' names or data.
type metrics struct {
	queries  *prometheus.CounterVec
	latency  prometheus.Histogram
	releases *prometheus.CounterVec
	rho      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedstat_node_queries_total",
			Help: "Evaluate requests by outcome (answered, replayed, pending approval, refused)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fedstat_node_evaluate_seconds",
			Help: "Time to evaluate, noise, encrypt and sign a partial.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedstat_node_releases_total",
			Help: "Key-switch requests by outcome (released, refused)."}, []string{"outcome"}),
		rho: prometheus.NewCounter(prometheus.CounterOpts{Name: "fedstat_node_rho_debited_total",
			Help: "Privacy loss debited from the node's budget (zCDP rho)."}),
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.latency, m.releases, m.rho)
	}
	return m
}
