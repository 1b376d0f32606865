package coordinator

import "github.com/prometheus/client_golang/prometheus"

// metrics are the coordinator's Prometheus metrics. Labels carry no query
// text, analyst names or results.
type metrics struct {
	queries  *prometheus.CounterVec
	duration prometheus.Histogram
	partials *prometheus.CounterVec
	epoch    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedstat_coordinator_queries_total",
			Help: "Queries by final state (done, failed, cancelled)."}, []string{"state"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fedstat_coordinator_query_seconds",
			Help: "Time from submission to release.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		partials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedstat_coordinator_partials_total",
			Help: "Partials by outcome (accepted, failed)."}, []string{"outcome"}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fedstat_coordinator_key_epoch", Help: "The current key epoch."}),
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.duration, m.partials, m.epoch)
	}
	return m
}
