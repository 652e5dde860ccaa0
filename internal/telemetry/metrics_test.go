package telemetry

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/cxone"
)

// The metrics register on a fresh registry, every publish outcome is
// present from the start, and the Observe helpers move the right series.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	if total, by := Sum(reg, "cxbridge_publish_attempts_total", "outcome"); total != 0 || len(by) != 9 {
		t.Fatalf("attempts at start: %v %v", total, by)
	} else if _, ok := by["redirect"]; !ok {
		t.Fatalf("attempts at start: no redirect series in %v", by)
	}
	m.ObserveAttempt(cxone.Accepted, 20*time.Millisecond)
	m.ObserveAttempt(cxone.ServerError, time.Second)
	m.ObserveAttempt(cxone.Redirect, time.Millisecond)
	m.ObserveBreaker(gobreaker.StateClosed, gobreaker.StateOpen)
	m.ObserveCommit("cxone.events", 3, 42, nil)
	m.ObserveCommit("cxone.events", 3, 43, errors.New("rebalance"))
	m.ObserveToken(1_900_000_000, nil)
	m.ObserveToken(0, &cxone.TokenError{Status: 401, Config: true})
	m.ObserveSettled("accepted", time.Now().Add(-time.Second))
	m.ObserveSettled("invalid_json", time.Now())

	checks := []struct {
		name, label, value string
		want               float64
	}{
		{"cxbridge_publish_attempts_total", "outcome", "server_error", 1},
		{"cxbridge_publish_attempts_total", "outcome", "redirect", 1},
		{"cxbridge_breaker_state", "", "", 2},
		{"cxbridge_breaker_transitions_total", "to", "open", 1},
		{"cxbridge_committed_offset", "partition", "3", 42},
		{"cxbridge_commits_total", "", "", 1},
		{"cxbridge_commit_failures_total", "", "", 1},
		{"cxbridge_token_refreshes_total", "result", "config_error", 1},
		{"cxbridge_token_expiry_timestamp_seconds", "", "", 1_900_000_000},
		{"cxbridge_records_settled_total", "result", "invalid_json", 1},
		{"cxbridge_build_info", "", "", 1},
	}
	for _, c := range checks {
		total, by := Sum(reg, c.name, c.label)
		got := total
		if c.label != "" {
			got = by[c.value]
		}
		if got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "cxbridge_end_to_end_latency_seconds" && f.GetMetric()[0].GetHistogram().GetSampleCount() != 1 {
			t.Errorf("end-to-end latency observed %d times, want 1 (accepted only)", f.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
}
