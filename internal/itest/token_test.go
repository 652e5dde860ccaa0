package itest

import (
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
)

// Tokens that CXone stops honouring every 2 s, long before their expiry
// (so that an early refresh cannot save them), while records flow for
// about 6 s: each 401 invalidates the token, one refresh serves every
// publisher, the record is retried, nothing is dead-lettered nor lost, and
// the breaker never opens.
func TestTokenExpiryMidStream(t *testing.T) {
	const expiry, flow = 2 * time.Second, 6 * time.Second
	s := newStack(t, 6, sim.Config{TokenTTL: time.Hour, Faults: sim.Faults{TokenExpiry: sim.Duration(expiry)}})
	recs := keyedRecords(100, 20, 9)
	w := s.startWorker(nil)
	t0 := time.Now()
	s.writePaced(recs, flow)
	s.waitCommitted(time.Minute)
	el := time.Since(t0)
	w.stop(t)

	st := s.sim.Stats()
	refreshes, byResult := w.metric("cxbridge_token_refreshes_total", "result")
	_, to := w.metric("cxbridge_breaker_transitions_total", "to")
	t.Logf("%d records over %v; simulator %+v; token refreshes %v %v; breaker transitions %v", len(recs), el, st, refreshes, byResult, to)
	if st.Distinct != int64(len(recs)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(recs))
	}
	if st.ByStatus[401] == 0 {
		t.Error("no 401 answered: no token expired while records flowed")
	}
	// One token at the start, then one per expiry while records flowed.
	if want := int64(flow / expiry); st.TokensIssued < want {
		t.Errorf("%d tokens issued while records flowed for %v, want ≥ %d", st.TokensIssued, flow, want)
	}
	// Single flight: a handful of refreshes per expiry, not one per publisher.
	if most := 3 * (int64(el/expiry) + 1); st.TokenRequests > most {
		t.Errorf("%d token requests in %v, want ≤ %d", st.TokenRequests, el, most)
	}
	if to["open"] != 0 {
		t.Errorf("breaker opened %v times: a stale token is not an outage", to["open"])
	}
	if st.OrderViolations != 0 {
		t.Errorf("%d order violations", st.OrderViolations)
	}
	if n := len(s.dlqRecords()); n != 0 {
		t.Errorf("%d records dead-lettered for stale tokens", n)
	}
}
