// Package telemetry holds cxbridge's Prometheus metrics (one registry,
// owned by the caller, prefix cxbridge_) and the slog set-up. Labels stay
// low-cardinality: outcomes, reasons, partitions, never ids.
package telemetry

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/version"
)

// Metrics are the worker's collectors.
type Metrics struct {
	Consumed           prometheus.Counter
	Attempts           *prometheus.CounterVec
	AttemptDuration    prometheus.Histogram
	EndToEnd           prometheus.Histogram
	Retries            prometheus.Counter
	Resends            prometheus.Counter
	Settled            *prometheus.CounterVec
	DeadLetters        *prometheus.CounterVec
	DLQWriteFailures   *prometheus.CounterVec
	Commits            prometheus.Counter
	CommitFailures     prometheus.Counter
	CommittedOffset    *prometheus.GaugeVec
	BreakerState       prometheus.Gauge
	BreakerTransitions *prometheus.CounterVec
	RateLimitWait      prometheus.Counter
	TokenRefreshes     *prometheus.CounterVec
	TokenExpiry        prometheus.Gauge
	Rebalances         prometheus.Counter
}

// New registers the metrics, the Go and process collectors and build info on reg.
func New(reg prometheus.Registerer) *Metrics {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{
		Consumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_records_consumed_total", Help: "Records fetched from the input topic and processed."}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cxbridge_publish_attempts_total", Help: "Publish attempts by outcome."}, []string{"outcome"}),
		AttemptDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cxbridge_publish_attempt_duration_seconds", Help: "Duration of one publish attempt.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15}}),
		EndToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cxbridge_end_to_end_latency_seconds", Help: "From the record's timestamp to its acceptance by CXone.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}),
		Retries:          prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_publish_retries_total", Help: "Retries after a server error, redirect, timeout or network error."}),
		Resends:          prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_publish_resends_total", Help: "Publishes sent again at once on a new connection because theirs broke under them (reset or closed before an answer), not counted as failures; each may have reached CXone (a possible duplicate)."}),
		Settled:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cxbridge_records_settled_total", Help: "Records settled, by result (accepted or a DLQ reason)."}, []string{"result"}),
		DeadLetters:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cxbridge_dead_letters_total", Help: "Records written to the DLQ topic, by reason."}, []string{"reason"}),
		DLQWriteFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cxbridge_dlq_write_failures_total", Help: "Failed DLQ write attempts (each is retried), by kind: transient, or permanent (the topic refuses the record for good)."}, []string{"kind"}),
		Commits:          prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_commits_total", Help: "Offset commits that succeeded, per partition."}),
		CommitFailures:   prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_commit_failures_total", Help: "Offset commits that failed, per partition."}),
		CommittedOffset:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cxbridge_committed_offset", Help: "The last offset this member committed, by partition."}, []string{"topic", "partition"}),
		BreakerState:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "cxbridge_breaker_state", Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open."}),
		BreakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cxbridge_breaker_transitions_total", Help: "Circuit breaker state changes, by new state."},
			[]string{"to"}),
		RateLimitWait:  prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_rate_limited_wait_seconds_total", Help: "Time publishers spent held by CXone's 429 answers, summed over publishers."}),
		TokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cxbridge_token_refreshes_total", Help: "Token requests by result (ok, config_error, transient_error)."}, []string{"result"}),
		TokenExpiry:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "cxbridge_token_expiry_timestamp_seconds", Help: "When the current access token expires (Unix time)."}),
		Rebalances:     prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_rebalances_total", Help: "Consumer group generations joined."}),
	}
	for _, c := range []prometheus.Collector{m.Consumed, m.Attempts, m.AttemptDuration, m.EndToEnd, m.Retries, m.Resends, m.Settled, m.DeadLetters,
		m.DLQWriteFailures, m.Commits, m.CommitFailures, m.CommittedOffset, m.BreakerState, m.BreakerTransitions, m.RateLimitWait,
		m.TokenRefreshes, m.TokenExpiry, m.Rebalances} {
		f(c)
	}
	info := version.Get()
	bi := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cxbridge_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": info.Version, "revision": info.Revision, "goversion": info.GoVersion}})
	bi.Set(1)
	f(bi)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.DLQWriteFailures.WithLabelValues("transient") // both kinds present from the start, at 0
	m.DLQWriteFailures.WithLabelValues("permanent")
	for _, o := range []cxone.Class{cxone.Accepted, cxone.Rejected, cxone.Forbidden, cxone.Unauthorized, cxone.RateLimited, cxone.ServerError, cxone.Redirect, cxone.Timeout, cxone.NetworkError} {
		m.Attempts.WithLabelValues(string(o)) // every outcome present from the start, at 0
	}
	return m
}

// ObserveAttempt counts one publish attempt.
func (m *Metrics) ObserveAttempt(class cxone.Class, d time.Duration) {
	m.Attempts.WithLabelValues(string(class)).Inc()
	m.AttemptDuration.Observe(d.Seconds())
}

// ObserveBreaker records a breaker state change.
func (m *Metrics) ObserveBreaker(_, to gobreaker.State) {
	m.BreakerState.Set(BreakerValue(to))
	m.BreakerTransitions.WithLabelValues(to.String()).Inc()
}

// BreakerValue maps a breaker state to the gauge's value.
func BreakerValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}

// ForgetPartitions deletes the per-partition series of partitions this
// member no longer holds.
func (m *Metrics) ForgetPartitions(topic string, partitions []int) {
	for _, p := range partitions {
		m.CommittedOffset.DeleteLabelValues(topic, strconv.Itoa(p))
	}
}

// ObserveCommit records one partition's commit.
func (m *Metrics) ObserveCommit(topic string, partition int, offset int64, err error) {
	if err != nil {
		m.CommitFailures.Inc()
		return
	}
	m.Commits.Inc()
	m.CommittedOffset.WithLabelValues(topic, strconv.Itoa(partition)).Set(float64(offset))
}

// ObserveToken records one token request.
func (m *Metrics) ObserveToken(expiresAt int64, err error) {
	switch {
	case err == nil:
		m.TokenRefreshes.WithLabelValues("ok").Inc()
		m.TokenExpiry.Set(float64(expiresAt))
	case cxone.IsConfigError(err):
		m.TokenRefreshes.WithLabelValues("config_error").Inc()
	default:
		m.TokenRefreshes.WithLabelValues("transient_error").Inc()
	}
}

// ObserveSettled records a settled record: its result and, when accepted,
// its end-to-end latency from the record's timestamp.
func (m *Metrics) ObserveSettled(result string, recordTime time.Time) {
	m.Settled.WithLabelValues(result).Inc()
	if result == "accepted" && !recordTime.IsZero() {
		m.EndToEnd.Observe(time.Since(recordTime).Seconds())
	}
}
