package bridge

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/telemetry"
)

// shippedSettings are the shipped defaults, with the CXone settings that
// have none.
func shippedSettings(t *testing.T) Settings {
	t.Helper()
	var s Settings
	fs := config.NewFlagSet("test")
	s.CXone.Register(fs)
	s.Kafka.Register(fs)
	s.Worker.Register(fs)
	if err := fs.Parse(nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	s.CXone.BaseURL, s.CXone.ClientID, s.CXone.ClientSecret = "http://127.0.0.1:1", "id", config.NewSecret("secret")
	return s
}

// A worker's registry holds its cxbridge_ metrics from the start, each
// publish outcome among them (the README's metrics table lists them; the
// vectors whose series come with their first event — settled results,
// dead-letter reasons, commits and lag by partition, breaker transitions,
// token results — show only then).
func TestWorkerRegistersEveryMetric(t *testing.T) {
	w, err := NewWorker(shippedSettings(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.transport.CloseIdleConnections()
	defer w.dlq.Close()
	fams, err := w.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fams {
		got = append(got, f.GetName())
	}
	for _, name := range []string{
		"cxbridge_records_consumed_total", "cxbridge_publish_attempts_total",
		"cxbridge_publish_attempt_duration_seconds", "cxbridge_end_to_end_latency_seconds", "cxbridge_publish_retries_total",
		"cxbridge_publish_resends_total", "cxbridge_dlq_write_failures_total",
		"cxbridge_dlq_refused_records", "cxbridge_in_flight_records", "cxbridge_in_flight_bytes",
		"cxbridge_oldest_unsettled_age_seconds", "cxbridge_commits_total", "cxbridge_commit_failures_total",
		"cxbridge_rebalances_total", "cxbridge_group_unserved_partitions", "cxbridge_group_rejoins_total",
		"cxbridge_breaker_state", "cxbridge_rate_limited_wait_seconds_total",
		"cxbridge_rate_limit_per_second", "cxbridge_token_expiry_timestamp_seconds", "cxbridge_build_info",
	} {
		if !slices.Contains(got, name) {
			t.Errorf("%s not registered", name)
		}
	}
	_, outcomes := telemetry.Sum(w.Registry(), "cxbridge_publish_attempts_total", "outcome")
	for _, o := range attemptOutcomes {
		if _, ok := outcomes[o]; !ok {
			t.Errorf("no cxbridge_publish_attempts_total{outcome=%q} series at the start", o)
		}
	}
	if len(outcomes) != 9 {
		t.Errorf("%d outcome series at the start, want 9: %v", len(outcomes), outcomes)
	}
}

// The owners' states reach telemetry as its label values and numbers.
func TestMetricsMapping(t *testing.T) {
	for s, want := range map[gobreaker.State]float64{gobreaker.StateClosed: 0, gobreaker.StateHalfOpen: 1, gobreaker.StateOpen: 2} {
		if got := breakerValue(s); got != want {
			t.Errorf("breakerValue(%v) = %v, want %v", s, got, want)
		}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, telemetry.TokenOK},
		{&cxone.TokenError{Status: 401, Config: true}, telemetry.TokenConfigError},
		{&cxone.TokenError{Status: 503}, telemetry.TokenTransientError},
		{errors.New("dial tcp: refused"), telemetry.TokenTransientError},
	} {
		if got := tokenResult(c.err); got != c.want {
			t.Errorf("tokenResult(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if got := dlqFailureKind(errors.New("broker not available")); got != telemetry.DLQWriteTransient {
		t.Errorf("dlqFailureKind(transient) = %q", got)
	}

	if got := dlqFailureKind(kafka.TopicAuthorizationFailed); got != telemetry.DLQWritePermanent {
		t.Errorf("dlqFailureKind(TopicAuthorizationFailed) = %q", got)
	}

	reg := prometheus.NewRegistry()
	m := telemetry.New(reg)
	h := publishHooks(m)
	h.BreakerState(gobreaker.StateClosed, gobreaker.StateOpen)
	h.Attempt(cxone.ServerError, time.Second)
	h.GateWait(1500 * time.Millisecond)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"cxbridge_breaker_state", "", "", 2},
		{"cxbridge_breaker_transitions_total", "to", "open", 1},
		{"cxbridge_publish_attempts_total", "outcome", "server_error", 1},
		{"cxbridge_rate_limited_wait_seconds_total", "", "", 1.5},
	} {
		total, by := telemetry.Sum(reg, c.name, c.label)
		if c.label != "" {
			total = by[c.value]
		}
		if total != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, total, c.want)
		}
	}
}
