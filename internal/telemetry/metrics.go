// Package telemetry holds cxbridge's Prometheus metrics (one registry,
// owned by the caller, prefix cxbridge_) and the slog set-up. Labels stay
// low-cardinality: outcomes, reasons, partitions, never ids.
//
// It knows nothing of Kafka, CXone or the circuit breaker: the packages
// that own a state map it to a label value or a number before handing it
// over (see bridge's metrics wiring).
package telemetry

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cxbridge/cxbridge/internal/version"
)

// Metrics are the worker's collectors.
type Metrics struct {
	reg prometheus.Registerer

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
	ConsumerLag        *prometheus.GaugeVec
	UnservedPartitions prometheus.Gauge
	GroupRejoins       prometheus.Counter
}

// The results of cxbridge_token_refreshes_total.
const (
	TokenOK             = "ok"
	TokenConfigError    = "config_error"
	TokenTransientError = "transient_error"
)

// The kinds of cxbridge_dlq_write_failures_total.
const (
	DLQWriteTransient = "transient"
	DLQWritePermanent = "permanent"
)

// New registers the metrics, the Go and process collectors and build info
// on reg. outcomes are the publish attempt outcomes (the owner's classes):
// each has its series from the start, at 0.
func New(reg prometheus.Registerer, outcomes ...string) *Metrics {
	m := &Metrics{
		reg:      reg,
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
		// No partition label: a commit of several partitions counts once for each.
		Commits:         prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_commits_total", Help: "Partition offsets committed successfully (a commit of several partitions counts once for each)."}),
		CommitFailures:  prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_commit_failures_total", Help: "Partition offsets whose commit failed (a commit of several partitions counts once for each)."}),
		CommittedOffset: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cxbridge_committed_offset", Help: "The last offset this member committed, by partition."}, []string{"topic", "partition"}),
		BreakerState:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "cxbridge_breaker_state", Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open."}),
		BreakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cxbridge_breaker_transitions_total", Help: "Circuit breaker state changes, by new state."},
			[]string{"to"}),
		RateLimitWait:  prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_rate_limited_wait_seconds_total", Help: "Time publishers spent held by CXone's 429 answers, summed over publishers."}),
		TokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cxbridge_token_refreshes_total", Help: "Token requests by result (ok, config_error, transient_error)."}, []string{"result"}),
		TokenExpiry:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "cxbridge_token_expiry_timestamp_seconds", Help: "When the current access token expires (Unix time)."}),
		Rebalances:     prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_rebalances_total", Help: "Consumer group generations joined."}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cxbridge_consumer_lag", Help: "Records of the partitions this member holds that the group has not committed (end offset − committed offset)."},
			[]string{"topic", "partition"}),
		UnservedPartitions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cxbridge_group_unserved_partitions", Help: "Partitions of the input topic with uncommitted records whose committed offset has not moved for the bound (see /readyz), that this member does not hold or holds without fetching: the group leaves them to nobody alive."}),
		GroupRejoins:       prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_group_rejoins_total", Help: "Times this member left the consumer group and joined it again because the group left partitions unserved."}),
	}
	reg.MustRegister(m.Consumed, m.Attempts, m.AttemptDuration, m.EndToEnd, m.Retries, m.Resends, m.Settled, m.DeadLetters,
		m.DLQWriteFailures, m.Commits, m.CommitFailures, m.CommittedOffset, m.BreakerState, m.BreakerTransitions, m.RateLimitWait,
		m.TokenRefreshes, m.TokenExpiry, m.Rebalances, m.ConsumerLag, m.UnservedPartitions, m.GroupRejoins)
	info := version.Get()
	bi := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cxbridge_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": info.Version, "revision": info.Revision, "goversion": info.GoVersion}})
	bi.Set(1)
	reg.MustRegister(bi, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.DLQWriteFailures.WithLabelValues(DLQWriteTransient) // both kinds present from the start, at 0
	m.DLQWriteFailures.WithLabelValues(DLQWritePermanent)
	for _, o := range outcomes {
		m.Attempts.WithLabelValues(o) // every outcome present from the start, at 0
	}
	return m
}

// Gauges are read at every scrape from their owners. Every field is
// required.
type Gauges struct {
	InFlightRecords    func() int
	InFlightBytes      func() int64
	OldestUnsettledAge func() time.Duration
	DLQRefusedRecords  func() int
	RateLimitPerSecond func() float64
}

// Watch registers the gauges read at every scrape.
func (m *Metrics) Watch(g Gauges) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_in_flight_records", Help: "Records held: queued behind their key or being published."},
			func() float64 { return float64(g.InFlightRecords()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_in_flight_bytes", Help: "Bytes of the records held (key, value, headers), bounded by --max-in-flight-bytes."},
			func() float64 { return float64(g.InFlightBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_oldest_unsettled_age_seconds", Help: "Age of the oldest fetched, unsettled record."},
			func() float64 { return g.OldestUnsettledAge().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_dlq_refused_records", Help: "DLQ writes in progress whose record the DLQ topic refuses for good (retried until it accepts it; their partitions are not committed past them)."},
			func() float64 { return float64(g.DLQRefusedRecords()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_rate_limit_per_second", Help: "The client-side limit on publish attempts per second in force (adapted to CXone's 429s); 0 while there is none."},
			func() float64 { return g.RateLimitPerSecond() }),
	)
}

// ObserveAttempt counts one publish attempt with its outcome.
func (m *Metrics) ObserveAttempt(outcome string, d time.Duration) {
	m.Attempts.WithLabelValues(outcome).Inc()
	m.AttemptDuration.Observe(d.Seconds())
}

// ObserveBreaker records a breaker state change: to is the new state's
// name, value its gauge value (0 closed, 1 half-open, 2 open).
func (m *Metrics) ObserveBreaker(to string, value float64) {
	m.BreakerState.Set(value)
	m.BreakerTransitions.WithLabelValues(to).Inc()
}

// ObserveDLQWriteFailure counts a failed DLQ write attempt of a kind
// (DLQWriteTransient or DLQWritePermanent).
func (m *Metrics) ObserveDLQWriteFailure(kind string) {
	m.DLQWriteFailures.WithLabelValues(kind).Inc()
}

// ObserveDeadLetter counts a record written to the DLQ topic.
func (m *Metrics) ObserveDeadLetter(reason string) {
	m.DeadLetters.WithLabelValues(reason).Inc()
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

// ObserveLag replaces the lag series with lag's: the partitions this
// member holds, by topic and partition.
func (m *Metrics) ObserveLag(lag map[string]map[int]int64) {
	m.ConsumerLag.Reset()
	for topic, parts := range lag {
		for p, n := range parts {
			m.ConsumerLag.WithLabelValues(topic, strconv.Itoa(p)).Set(float64(n))
		}
	}
}

// ObserveToken records one token request: its result (TokenOK,
// TokenConfigError or TokenTransientError) and, when TokenOK, when the
// token expires (Unix seconds).
func (m *Metrics) ObserveToken(result string, expiresAt int64) {
	m.TokenRefreshes.WithLabelValues(result).Inc()
	if result == TokenOK {
		m.TokenExpiry.Set(float64(expiresAt))
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
