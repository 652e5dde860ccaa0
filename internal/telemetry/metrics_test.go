package telemetry

import (
	"errors"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The metrics register on a fresh registry, every publish outcome is
// present from the start, and the Observe helpers move the right series.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, "accepted", "server_error", "redirect")
	if total, by := Sum(reg, "cxbridge_publish_attempts_total", "outcome"); total != 0 || len(by) != 3 {
		t.Fatalf("attempts at start: %v %v", total, by)
	} else if _, ok := by["redirect"]; !ok {
		t.Fatalf("attempts at start: no redirect series in %v", by)
	}
	m.ObserveAttempt("accepted", 20*time.Millisecond)
	m.ObserveAttempt("server_error", time.Second)
	m.ObserveAttempt("redirect", time.Millisecond)
	m.ObserveBreaker("open", 2)
	m.ObserveCommit("cxone.events", 3, 42, nil)
	m.ObserveCommit("cxone.events", 3, 43, errors.New("rebalance"))
	m.ObserveToken(TokenOK, 1_900_000_000)
	m.ObserveToken(TokenConfigError, 0)
	m.ObserveDLQWriteFailure(DLQWritePermanent)
	m.ObserveDeadLetter("invalid_json")
	m.ObserveLag(map[string]map[int]int64{"cxone.events": {1: 7, 2: 0}})
	m.ObserveLag(map[string]map[int]int64{"cxone.events": {2: 5}}) // partition 1 no longer held: its series goes
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
		{"cxbridge_dlq_write_failures_total", "kind", "permanent", 1},
		{"cxbridge_dlq_write_failures_total", "kind", "transient", 0},
		{"cxbridge_dead_letters_total", "reason", "invalid_json", 1},
		{"cxbridge_consumer_lag", "partition", "2", 5},
		{"cxbridge_consumer_lag", "", "", 5},
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

// The gauges read at every scrape report what their sources say.
func TestWatchGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.Watch(Gauges{
		InFlightRecords:    func() int { return 3 },
		InFlightBytes:      func() int64 { return 4096 },
		OldestUnsettledAge: func() time.Duration { return 1500 * time.Millisecond },
		DLQRefusedRecords:  func() int { return 1 },
		RateLimitPerSecond: func() float64 { return 12.5 },
	})
	for name, want := range map[string]float64{
		"cxbridge_in_flight_records": 3, "cxbridge_in_flight_bytes": 4096, "cxbridge_oldest_unsettled_age_seconds": 1.5,
		"cxbridge_dlq_refused_records": 1, "cxbridge_rate_limit_per_second": 12.5,
	} {
		if got, _ := Sum(reg, name, ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// telemetry knows nothing of CXone, Kafka or the breaker: their owners map
// their states before handing them over.
func TestTelemetryImportsNoOwners(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, banned := range []string{"github.com/cxbridge/cxbridge/internal/cxone", "github.com/sony/gobreaker/v2", "github.com/segmentio/kafka-go"} {
		if slices.Contains(deps, banned) {
			t.Errorf("telemetry depends on %s", banned)
		}
	}
}

// With two input topics, partition 0 of each has its own series of the
// per-partition metrics, told apart by the topic label; forgetting one
// leaves the other.
func TestPartitionSeriesOfTwoTopics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ObserveLag(map[string]map[int]int64{"orders": {0: 7}, "tickets": {0: 3}})
	m.ObserveCommit("orders", 0, 40, nil)
	m.ObserveCommit("tickets", 0, 12, nil)
	for _, c := range []struct {
		name string
		want map[string]float64
	}{
		{"cxbridge_consumer_lag", map[string]float64{"orders": 7, "tickets": 3}},
		{"cxbridge_committed_offset", map[string]float64{"orders": 40, "tickets": 12}},
	} {
		if _, by := Sum(reg, c.name, "topic"); !maps.Equal(by, c.want) {
			t.Errorf("%s by topic %v; want %v", c.name, by, c.want)
		}
	}
	m.ForgetPartitions("orders", []int{0})
	if _, by := Sum(reg, "cxbridge_committed_offset", "topic"); !maps.Equal(by, map[string]float64{"tickets": 12}) {
		t.Errorf("after forgetting orders/0: cxbridge_committed_offset by topic %v; want tickets' only", by)
	}
}
