package coordinator

import "github.com/prometheus/client_golang/prometheus"

// metrics are the coordinator's Prometheus metrics. Labels carry no query
// text, analyst names or results.
type metrics struct {
	queries  *prometheus.CounterVec
	duration prometheus.Histogram
	partials *prometheus.CounterVec
	epoch    prometheus.Gauge

	ceremonies       *prometheus.CounterVec
	ceremonyFailures prometheus.Gauge
	ceremonyNext     prometheus.Gauge
	releaseAttempts  *prometheus.CounterVec
	totalsRefused    *prometheus.CounterVec
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
		ceremonies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedstat_coordinator_key_ceremonies_total",
			Help: "Automatic key ceremonies by result (ok, failed)."}, []string{"result"}),
		ceremonyFailures: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fedstat_coordinator_key_ceremony_failures",
			Help: "Key ceremonies failed in a row since the last success (0 when none is failing)."}),
		ceremonyNext: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fedstat_coordinator_key_ceremony_next_attempt_timestamp_seconds",
			Help: "When the next key ceremony is planned (Unix time; 0 when none is)."}),
		releaseAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedstat_coordinator_release_attempts_total",
			Help: "Release attempts by decryptor set, by outcome (released, prepare_failed, release_failed, partial_refused: a partial the decryptors refused and the coordinator found bad)."}, []string{"outcome"}),
		totalsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedstat_coordinator_totals_refused_total",
			Help: "Decrypted totals refused (padding, range commitments, plausibility), by whom the proofs asked for then named: decryptor, member (its limbs) or none."}, []string{"named"}),
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.duration, m.partials, m.epoch, m.ceremonies, m.ceremonyFailures, m.ceremonyNext, m.releaseAttempts, m.totalsRefused)
	}
	return m
}
