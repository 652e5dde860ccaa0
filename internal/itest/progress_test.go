package itest

import (
	"fmt"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// cxbridge_last_accepted_timestamp_seconds (the CxbridgeNoProgress alert's
// clock) on a worker against the broker and the simulator: it is the
// worker's start until CXone accepts a record, dead letters do not move it,
// acceptances do, and through a CXone outage it stands still.
func TestLastAcceptedTimestamp(t *testing.T) {
	s := newStack(t, 3, sim.Config{})
	gauge := func(w *running) time.Time {
		v, _ := w.metric("cxbridge_last_accepted_timestamp_seconds", "")
		return time.Unix(0, int64(v*1e9))
	}
	const slack = 10 * time.Millisecond // the gauge is a float of seconds
	before := time.Now()
	w := s.startWorker(nil)
	started := gauge(w)
	if started.Before(before.Add(-slack)) || started.After(time.Now().Add(slack)) {
		t.Fatalf("before any record: %v, want the worker's start (between %v and now)", started, before)
	}

	// Dead letters only: settled, but nothing accepted.
	bad, _ := badRecords(2)
	s.write(bad)
	testutil.WaitFor(t, time.Minute, fmt.Sprintf("%d records dead-lettered", len(bad)), func() bool {
		n, _ := w.metric("cxbridge_dead_letters_total", "")
		return n >= float64(len(bad))
	})
	if got := gauge(w); !got.Equal(started) {
		t.Fatalf("after dead letters only: %v, want it unmoved at the start %v", got, started)
	}

	// Accepted records move it to when they were accepted.
	written := time.Now()
	s.write(goodRecords(30, 5, 1))
	s.waitAccepted(30, time.Minute)
	testutil.WaitFor(t, 10*time.Second, "the gauge to reach the acceptances", func() bool {
		n, by := w.metric("cxbridge_records_settled_total", "result")
		return n > 0 && by["accepted"] >= 30
	})
	last := gauge(w)
	if last.Before(written.Add(-slack)) || last.After(time.Now().Add(slack)) {
		t.Fatalf("after 30 acceptances: %v, want between the write %v and now", last, written)
	}

	// A CXone outage: records wait, nothing is accepted, the gauge stands.
	const outage = 3 * time.Second
	s.sim.SetFaults(sim.Faults{OutageFor: sim.Duration(outage)})
	outageEnd := time.Now().Add(outage)
	before = time.Now()
	s.write(goodRecords(20, 5, 2))
	testutil.WaitFor(t, 5*time.Second, "the breaker to open", func() bool { return w.w.BreakerState().String() == "open" })
	during := gauge(w)
	if during.After(before) {
		// Publishes that passed the simulator's outage check just before it
		// began may have been accepted; none after the breaker opened.
		t.Logf("an acceptance at %v, just as the outage began at %v", during, before)
	}
	time.Sleep(time.Until(outageEnd.Add(-300 * time.Millisecond))) // the outage is a window of time: look just before it ends
	if got := gauge(w); !got.Equal(during) {
		t.Fatalf("during the outage the gauge moved from %v to %v", during, got)
	}
	s.waitAccepted(50, time.Minute)
	testutil.WaitFor(t, 10*time.Second, "the gauge to move after the outage", func() bool { return gauge(w).After(outageEnd.Add(-slack)) },
		func() string { return fmt.Sprintf("gauge %v, outage ended %v", gauge(w), outageEnd) })
}
