package itest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// A CXone outage mid-stream is not a dead letter (invariant 5): the breaker
// opens, records wait without spending their retries, offsets stay put, and
// once CXone is back the breaker closes and every record is accepted.
func TestOutageIsNotADeadLetter(t *testing.T) {
	const outage = 5 * time.Second // the breaker's open timeout is 500 ms: ~10 probes fail
	s := newStack(t, 6, sim.Config{})
	recs := keyedRecords(100, 30, 3)
	s.write(recs)
	w := s.startWorker(nil)
	s.waitAccepted(300, time.Minute)

	s.sim.SetFaults(sim.Faults{OutageFor: sim.Duration(outage)})
	outageEnd := time.Now().Add(outage)
	t.Logf("outage of %v from %d accepted", outage, s.sim.Stats().Distinct)
	// Once the records in flight have failed and the settled ones are
	// committed, the committed offsets hold still until CXone is back.
	testutil.WaitFor(t, 3*time.Second, "the breaker open", func() bool { return w.w.BreakerState().String() == "open" })
	held := s.offsets()
	stableSince := time.Now()
	testutil.WaitFor(t, 3*time.Second, "the committed offsets to hold still during the outage", func() bool {
		o := s.offsets()
		if fmt.Sprint(o.Committed) != fmt.Sprint(held.Committed) {
			held, stableSince = o, time.Now()
		}
		return time.Since(stableSince) > 300*time.Millisecond // three commit intervals without a move
	}, func() string {
		dl, by := w.metric("cxbridge_dead_letters_total", "reason")
		return fmt.Sprintf("committed %v; dead letters %v %v", held.Committed, dl, by)
	})
	// The member stays ready through the outage: every member meets the
	// same outage, and taking them all out of service helps nothing (a
	// PodDisruptionBudget would block every eviction). /readyz says it.
	if w.w.BreakerState().String() == "open" {
		rec := httptest.NewRecorder()
		w.w.Admin().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "circuit breaker open") {
			t.Errorf("/readyz with the breaker open: %d %s; want 200 naming the open breaker", rec.Code, rec.Body)
		}
	}
	// Publishes that passed the simulator's outage check just before it
	// was set may still have been accepted: count from here.
	before := s.sim.Stats().Distinct
	watch := s.watchHeld(50*time.Millisecond, held, outageEnd)
	// The outage is a window of time, not an event to await: look just
	// before it ends.
	time.Sleep(time.Until(outageEnd.Add(-200 * time.Millisecond)))
	if got := s.sim.Stats().Distinct; got != before {
		t.Errorf("%d events accepted during the outage", got-before)
	}
	s.waitCommitted(time.Minute)
	watch.halt()
	w.stop(t)

	st := s.sim.Stats()
	t.Logf("simulator: %+v", st)
	if st.Distinct != int64(len(recs)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(recs))
	}
	if st.ByStatus[503] == 0 {
		t.Error("no 503 answered: the outage did not happen")
	}
	if st.OrderViolations != 0 {
		t.Errorf("%d order violations", st.OrderViolations)
	}
	if n := len(s.dlqRecords()); n != 0 {
		t.Errorf("%d records dead-lettered during an outage", n)
	}
	if dl, _ := w.metric("cxbridge_dead_letters_total", ""); dl != 0 {
		t.Errorf("cxbridge_dead_letters_total %v", dl)
	}
	_, to := w.metric("cxbridge_breaker_transitions_total", "to")
	t.Logf("breaker transitions %v; %d offset samples", to, watch.samples)
	if to["open"] < 1 || to["closed"] < 1 {
		t.Errorf("breaker transitions %v: want it opened and closed again", to)
	}
	if w.w.BreakerState().String() != "closed" {
		t.Errorf("breaker %s after recovery", w.w.BreakerState())
	}
	for _, v := range watch.bad {
		t.Error(v)
	}
	for _, v := range watch.regress {
		t.Error("committed offset moved backwards: " + v)
	}
}
