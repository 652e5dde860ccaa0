package itest

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// The worker stopped without draining, as a crash would (a 1 ms shutdown
// budget interrupts the records in flight, which stay uncommitted), at three
// random points of a run, and started again each time: nothing is lost
// (invariant 1) — every good record is accepted and every bad one
// dead-lettered at least once; redeliveries are allowed, and keep each
// key's order.
func TestCrashRestartLosesNothing(t *testing.T) {
	const keys, per = 80, 40
	s := newStack(t, 6, sim.Config{Faults: sim.Faults{Latency: sim.Duration(5 * time.Millisecond), LatencyJitter: sim.Duration(10 * time.Millisecond)}})
	good := keyedRecords(keys, per, 13)
	bad, want := badRecords(2)
	s.write(mix(good, bad, 14))
	watch := s.watchOffsets(50*time.Millisecond, nil)

	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, seed))
	crash := func(st *bridge.Settings) { st.Worker.ShutdownTimeout = time.Millisecond }
	w := s.startWorker(crash)
	n := int64(len(good))
	for i, band := range [][2]float64{{0.1, 0.3}, {0.4, 0.6}, {0.7, 0.85}} {
		at := int64((band[0] + r.Float64()*(band[1]-band[0])) * float64(n))
		t0 := time.Now()
		// Or until everything is committed: had records been lost, the
		// count would never be reached, and the checks below say so.
		testutil.WaitFor(t, time.Minute, fmt.Sprintf("%d distinct events accepted", at), func() bool {
			return s.sim.Stats().Distinct >= at || s.offsets().TotalLag() == 0
		}, func() string { return fmt.Sprintf("simulator %+v", s.sim.Stats()) })
		t.Logf("run %d: reached %d accepted in %v", i+1, at, time.Since(t0))
		held := w.w.InFlight()
		t0 = time.Now()
		w.stop(t)
		t.Logf("stop %d at %d accepted (seed %d): %d records held, stopped in %v", i+1, s.sim.Stats().Distinct, seed, held, time.Since(t0))
		w = s.startWorker(crash)
	}
	t0 := time.Now()
	s.waitCommitted(2 * time.Minute)
	t.Logf("the last worker finished in %v", time.Since(t0))
	w.stop(t)
	watch.halt()

	st := s.sim.Stats()
	t.Logf("simulator %+v; %d offset samples", st, watch.samples)
	if st.Distinct != n {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, n)
	}
	if st.Duplicates > 0 {
		t.Logf("%d events accepted more than once (allowed after a crash)", st.Duplicates)
	}
	s.checkKeys(keys, per)
	dups := 0
	seen := s.dlqByKey(want)
	for key := range want {
		switch c := seen[key]; {
		case c == 0:
			t.Errorf("%s is not in the DLQ", key)
		case c > 1:
			dups += c - 1
		}
	}
	if dups > 0 {
		t.Logf("%d bad records dead-lettered more than once (allowed after a crash)", dups)
	}
	for _, v := range watch.regress {
		t.Error("committed offset moved backwards: " + v)
	}
}
