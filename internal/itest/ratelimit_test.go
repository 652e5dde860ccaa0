package itest

import (
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// CXone's rate limit well below the offered rate: 429s hold every
// publisher for Retry-After and slow the client-side rate down, nothing is
// dead-lettered and everything is accepted (invariant 5).
func TestRateLimitIsNotADeadLetter(t *testing.T) {
	t.Run("configured", func(t *testing.T) { testRateLimit(t, 1000) })
	// Without --rate-limit the publisher finds the pace itself.
	t.Run("discovered", func(t *testing.T) { testRateLimit(t, 0) })
}

func testRateLimit(t *testing.T, configured float64) {
	const cxoneRate = 200
	s := newStack(t, 6, sim.Config{Faults: sim.Faults{RateLimit: cxoneRate, RetryAfter: "1"}})
	recs := keyedRecords(100, 20, 5)
	s.write(recs)
	t0 := time.Now()
	w := s.startWorker(func(st *bridge.Settings) { st.CXone.RateLimit = configured })
	s.waitCommitted(2 * time.Minute)
	el := time.Since(t0)
	w.stop(t)

	st := s.sim.Stats()
	waited, _ := w.metric("cxbridge_rate_limited_wait_seconds_total", "")
	t.Logf("%d records in %v (%.0f/s; CXone allows %d/s), rate-limited wait %.1fs summed over publishers; simulator %+v",
		len(recs), el, float64(len(recs))/el.Seconds(), cxoneRate, waited, st)
	if st.Distinct != int64(len(recs)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(recs))
	}
	if st.ByStatus[429] == 0 {
		t.Error("no 429 answered: the rate limit was not reached")
	}
	if waited <= 0 {
		t.Errorf("cxbridge_rate_limited_wait_seconds_total %v, want > 0", waited)
	}
	if st.OrderViolations != 0 {
		t.Errorf("%d order violations", st.OrderViolations)
	}
	if n := len(s.dlqRecords()); n != 0 {
		t.Errorf("%d records dead-lettered for a rate limit", n)
	}
}
