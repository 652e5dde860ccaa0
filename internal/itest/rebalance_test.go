package itest

import (
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// Two workers in one group, one stopped mid-stream: its partitions move to
// the other, nothing is lost (invariant 1) and the group's committed
// offsets never move backwards (invariant 2), sampled every 50 ms
// throughout.
func TestTwoWorkersOneStops(t *testing.T) {
	const keys, per = 100, 40
	s := newStack(t, 6, sim.Config{Faults: sim.Faults{Latency: sim.Duration(2 * time.Millisecond), LatencyJitter: sim.Duration(8 * time.Millisecond)}})
	recs := keyedRecords(keys, per, 17)
	watch := s.watchOffsets(50*time.Millisecond, nil)
	// Fewer records held make the drains of the two rebalances short.
	small := func(st *bridge.Settings) { st.Worker.MaxInFlight = 64 }
	a := s.startWorker(small)
	b := s.startWorker(small)
	both := func() bool {
		sa, sb := a.w.Consumer().Status(), b.w.Consumer().Status()
		return sa.Joined && sb.Joined && sa.Generation == sb.Generation && len(sa.Partitions) > 0 && len(sb.Partitions) > 0
	}
	testutil.WaitFor(t, 30*time.Second, "both workers holding partitions of one generation", both)
	gen := a.w.Consumer().Status().Generation
	t.Logf("generation %d: a holds %d partitions, b %d", gen, len(a.w.Consumer().Status().Partitions), len(b.w.Consumer().Status().Partitions))

	s.write(recs)
	s.waitAccepted(int64(len(recs))/3, time.Minute)
	if !both() {
		t.Fatal("the group rebalanced before the stop")
	}
	t0 := time.Now()
	a.stop(t)
	t.Logf("a stopped at %d accepted in %v", s.sim.Stats().Distinct, time.Since(t0))
	testutil.WaitFor(t, 20*time.Second, "b holding all 6 partitions", func() bool {
		st := b.w.Consumer().Status()
		return st.Joined && len(st.Partitions) == 6
	})
	t.Logf("b holds all partitions %v after the stop (generation %d)", time.Since(t0), b.w.Consumer().Status().Generation)
	s.waitCommitted(time.Minute)
	b.stop(t)
	watch.halt()

	st := s.sim.Stats()
	ca, _ := a.metric("cxbridge_records_consumed_total", "")
	cb, _ := b.metric("cxbridge_records_consumed_total", "")
	t.Logf("simulator %+v; consumed: a %v, b %v; %d offset samples, moves by partition %v", st, ca, cb, watch.samples, watch.moves)
	if st.Distinct != int64(len(recs)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(recs))
	}
	if ca == 0 || cb == 0 {
		t.Errorf("records consumed: a %v, b %v; both should have worked", ca, cb)
	}
	s.checkKeys(keys, per)
	if watch.samples < 10 {
		t.Errorf("only %d offset samples", watch.samples)
	}
	for _, v := range watch.regress {
		t.Error("committed offset moved backwards: " + v)
	}
}
