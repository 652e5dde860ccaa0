package itest

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// An outage is never a dead letter, whatever the traffic: the tests here
// run with the worker's shipped CXone settings (retries, backoff, breaker,
// timeout), not the shortened ones of settings(), since how many records
// are in flight against those defaults is what used to decide whether an
// outage dead-lettered.

// shippedCXone sets st's CXone retry, backoff, breaker and timeout settings
// back to the shipped defaults.
func shippedCXone(t *testing.T) func(*bridge.Settings) {
	return func(st *bridge.Settings) {
		var d config.CXone
		fs := config.NewFlagSet("defaults")
		d.Register(fs)
		if err := fs.Parse(nil, io.Discard); err != nil {
			t.Fatal(err)
		}
		c := &st.CXone
		c.Timeout, c.MaxRetries, c.RetryBackoff, c.MaxBackoff = d.Timeout, d.MaxRetries, d.RetryBackoff, d.MaxBackoff
		c.BreakerFailures, c.BreakerOpenTimeout, c.BreakerProbes, c.RateLimit = d.BreakerFailures, d.BreakerOpenTimeout, d.BreakerProbes, d.RateLimit
		if c.MaxRetries != 3 || c.RetryBackoff != time.Second || c.BreakerFailures != 5 || c.BreakerOpenTimeout != 5*time.Second {
			t.Fatalf("the shipped defaults changed (%+v): revisit the outage lengths of these tests", d)
		}
	}
}

// quietOutage produces n records on n keys during a 503 outage of 15 s
// (longer than the ~9 s after which the shipped retry budget of 4 attempts
// used to be spent) on an otherwise idle topic, and checks that none is
// dead-lettered and all are accepted once CXone is back.
func quietOutage(t *testing.T, n int) {
	const outage = 15 * time.Second
	s := newStack(t, 3, sim.Config{})
	w := s.startWorker(shippedCXone(t))
	warm := s.warmUp(3, time.Minute) // joined, fetching, a token in hand
	s.waitCommitted(time.Minute)
	before := s.sim.Stats()

	s.sim.SetFaults(sim.Faults{OutageFor: sim.Duration(outage)})
	outageEnd := time.Now().Add(outage)
	recs := keyedRecords(n, 1, 11)
	s.write(recs)
	held := s.offsets()
	watch := s.watchHeld(100*time.Millisecond, held, outageEnd)
	want := before.Distinct + int64(n)
	testutil.WaitFor(t, outage+2*time.Minute, fmt.Sprintf("%d records accepted", n), func() bool {
		if dl, by := w.metric("cxbridge_dead_letters_total", "reason"); dl != 0 {
			t.Fatalf("dead-lettered during the outage: %v (simulator %+v)", by, s.sim.Stats())
		}
		return s.sim.Stats().Distinct >= want
	}, func() string { return fmt.Sprintf("simulator %+v", s.sim.Stats()) })
	s.waitCommitted(time.Minute)
	watch.halt()
	w.stop(t)

	st := s.sim.Stats()
	failed := st.ByStatus[503] - before.ByStatus[503]
	t.Logf("accepted %d of %d after %v; %d answers 503 during the outage; simulator %+v",
		st.Distinct-before.Distinct, n, time.Since(outageEnd.Add(-outage)).Round(time.Second), failed, st)
	if st.Distinct != int64(len(warm)+n) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(warm)+n)
	}
	if failed < 4 { // the 4 attempts of the old budget, at least
		t.Errorf("%d answers 503: the outage did not outlast the old retry budget", failed)
	}
	if recs := s.dlqRecords(); len(recs) != 0 {
		t.Errorf("%d records dead-lettered during an outage", len(recs))
	}
	if dl, by := w.metric("cxbridge_dead_letters_total", "reason"); dl != 0 {
		t.Errorf("cxbridge_dead_letters_total %v %v", dl, by)
	}
	for _, v := range watch.bad {
		t.Error(v)
	}
	for _, v := range watch.regress {
		t.Error("committed offset moved backwards: " + v)
	}
}

// One record produced during an outage, alone on the topic: the breaker
// (5 consecutive failures) never opens before its 4 attempts are spent, and
// it used to be dead-lettered as retries_exhausted after ~9 s.
func TestQuietOutageOneRecord(t *testing.T) { quietOutage(t, 1) }

// Three records on three keys during an outage, likewise.
func TestQuietOutageThreeKeys(t *testing.T) { quietOutage(t, 3) }

// A flapping outage, 5 s down and 5 s up for a minute, while records keep
// arriving: none is dead-lettered, all are accepted, in order per key — and
// the worker makes progress while it flaps, not only once it ends.
//
// Progress: at least 100 of the 580 records (a sixth) are accepted before
// the flapping ends. With a fixed open period equal to the flap period (the
// old 10 s) every probe landed in a down phase: 0 accepted in every run.
//
// With the jittered period (the shipped 5 s: each opening lasts D drawn
// from U[2.5 s, 7.5 s)), take cycle k: down [10k, 10k+5), up [10k+5,
// 10k+10) seconds. The breaker is opened at 10k+e with e in [0, 2.5):
// within a second of the down phase starting if it was closed (5 failures
// at 10 records/s), or by the failed probe of an open period that skipped
// the last up phase (such a probe comes at most 7.5 s after an opening in a
// down phase, so before 10k+2.5). Call the cycle good if a probe succeeds
// at least 0.5 s before its up phase ends: time enough for its answer and
// for 100 held records to flush once the breaker closes (the log's "at most
// N in 100 ms" was 62-130 in five runs on a busy 2-core machine: 600
// records/s or more; the records held behind the few in backoff, on ~5 of
// the 29 keys, cannot bring 150 below 100). The cycle is bad only if
//   - the first probe, at 10k+e+D, lands at 10k+9.5 or later:
//     P = max(0, e−2)/5; or
//   - it lands in the down phase (D < 5−e), reopening at s = e+D, and the
//     next probe lands at 10k+9.5 or later: P = (s−2)/5.
//
// Integrating, P(bad | e) = max(0, e−2)/5 + (9 − (e+0.5)²)/50 ≤ 0.175 (at
// e = 0), whatever happened before. A good cycle among k = 1..5 accepts the
// ≥ 150 records written by 15 s, so the assertion fails with probability
// ≤ 0.175⁵ ≈ 1.6·10⁻⁴ (a simulation of this model, 2·10⁷ runs: ~10⁻⁵).
func TestFlappingOutage(t *testing.T) {
	const flapFor, minDuring = time.Minute, 100
	s := newStack(t, 6, sim.Config{})
	w := s.startWorker(shippedCXone(t))
	warm := s.warmUp(6, time.Minute)
	before := s.sim.Stats()
	flapStart := time.Now() // the simulator's flapping starts after this, and ends a minute after
	s.sim.SetFaults(sim.Faults{FlapDown: sim.Duration(5 * time.Second), FlapUp: sim.Duration(5 * time.Second), FlapFor: sim.Duration(flapFor)})
	start := time.Now()
	timeline := s.sampleAccepted(flapStart, flapFor)
	const keys, per = 29, 20 // 580 records, one every 100 ms: flowing the whole minute
	recs := keyedRecords(keys, per, 12)
	s.writePaced(recs, flapFor-2*time.Second)
	t.Logf("wrote %d records in %v; accepted so far %d", len(recs), time.Since(start).Round(time.Second), s.sim.Stats().Distinct-before.Distinct)
	during := timeline.wait(t) - before.Distinct
	t.Logf("accepted during the flapping minute: %d of %d; per up phase (5-10 s, 15-20 s, ...): %v; at most %d in 100 ms",
		during, len(recs), timeline.perUpPhase(before.Distinct, 5*time.Second, 5*time.Second), timeline.peak())
	s.waitAccepted(before.Distinct+int64(len(recs)), flapFor+3*time.Minute)
	s.waitCommitted(time.Minute)
	w.stop(t)

	st := s.sim.Stats()
	t.Logf("all accepted %v after the flapping began; simulator %+v", time.Since(start).Round(time.Second), st)
	_, attempts := w.metric("cxbridge_publish_attempts_total", "outcome")
	_, to := w.metric("cxbridge_breaker_transitions_total", "to")
	t.Logf("attempts %v; breaker transitions %v", attempts, to)
	if during < minDuring {
		t.Errorf("%d records accepted while CXone flapped (up half of the minute), want at least %d: the breaker's probes keep missing the up phases", during, minDuring)
	}
	if st.Distinct != int64(len(warm)+len(recs)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(warm)+len(recs))
	}
	if st.ByStatus[503] == 0 {
		t.Error("no 503 answered: the flapping did not happen")
	}
	if recs := s.dlqRecords(); len(recs) != 0 {
		t.Errorf("%d records dead-lettered during a flapping outage", len(recs))
	}
	if dl, by := w.metric("cxbridge_dead_letters_total", "reason"); dl != 0 {
		t.Errorf("cxbridge_dead_letters_total %v %v", dl, by)
	}
	s.checkKeys(keys, per)
}

// acceptedTimeline is the simulator's count of distinct accepted events,
// sampled every 100 ms over a window.
type acceptedTimeline struct {
	from    time.Time
	done    chan struct{}
	stop    chan struct{}
	at      []time.Duration // since from, taken after the count was read
	n       []int64
	stopped sync.Once
}

// sampleAccepted samples the accepted count from from until d after it;
// every sample it keeps was read before from+d.
func (s *stack) sampleAccepted(from time.Time, d time.Duration) *acceptedTimeline {
	tl := &acceptedTimeline{from: from, done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(tl.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			n := s.sim.Stats().Distinct
			at := time.Since(from)
			if at >= d {
				return
			}
			tl.at, tl.n = append(tl.at, at), append(tl.n, n)
			select {
			case <-tl.stop:
				return
			case <-tick.C:
			}
		}
	}()
	s.t.Cleanup(func() { tl.stopped.Do(func() { close(tl.stop) }); <-tl.done })
	return tl
}

// wait waits for the window to end and returns the last count in it.
func (tl *acceptedTimeline) wait(t *testing.T) int64 {
	t.Helper()
	select {
	case <-tl.done:
	case <-time.After(time.Until(tl.from.Add(2 * time.Minute))):
		t.Fatal("the accepted-count sampler did not end")
	}
	if len(tl.n) == 0 {
		t.Fatal("no sample of the accepted count")
	}
	return tl.n[len(tl.n)-1]
}

// peak returns the most events accepted between two samples.
func (tl *acceptedTimeline) peak() int64 {
	var most int64
	for i := 1; i < len(tl.n); i++ {
		most = max(most, tl.n[i]-tl.n[i-1])
	}
	return most
}

// perUpPhase returns how many events were accepted (over base) during each
// up phase of a flapping that starts down, as far as the samples go.
func (tl *acceptedTimeline) perUpPhase(base int64, down, up time.Duration) []int64 {
	count := func(at time.Duration) int64 { // the last sample before at
		n := base
		for i, a := range tl.at {
			if a < at {
				n = tl.n[i]
			}
		}
		return n
	}
	var out []int64
	last := tl.at[len(tl.at)-1]
	for p := down; p < last; p += down + up {
		out = append(out, count(min(p+up, last+1))-count(p))
	}
	return out
}

// A record CXone refuses (500) every time, among records it accepts, is
// dead-lettered as retries_exhausted at the shipped defaults: the evidence
// the rule asks for (other publishes answered normally while its attempts
// are out) comes from ordinary traffic. Records keep arriving (200/s over
// 40 keys) until it is in the DLQ; the simulator answers in 1-21 ms.
func TestPoisonAmongFlowingRecords(t *testing.T) {
	s := newStack(t, 6, sim.Config{})
	w := s.startWorker(shippedCXone(t))
	warm := s.warmUp(6, time.Minute)
	s.sim.SetFaults(sim.Faults{FailCorrelationIDs: []string{"poison-1"},
		Latency: sim.Duration(time.Millisecond), LatencyJitter: sim.Duration(20 * time.Millisecond)})
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	s.write([]kafka.Message{{Key: []byte("poison"), Value: fmt.Appendf(nil,
		`{"eventType":"custom.itest","source":"itest","timestamp":%q,"correlationId":"poison-1","data":{}}`, ts)}})
	start := time.Now()
	written := 0
	for seed := uint64(100); ; seed++ {
		if dl, _ := w.metric("cxbridge_dead_letters_total", ""); dl > 0 {
			break
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("the poison record is not dead-lettered after %v of traffic; simulator %+v", time.Since(start), s.sim.Stats())
		}
		s.write(goodRecords(20, 40, seed))
		written += 20
		time.Sleep(100 * time.Millisecond) // the traffic's pace (200/s), not a wait: the loop has its deadline above
	}
	t.Logf("dead-lettered after %v, %d records written meanwhile", time.Since(start).Round(100*time.Millisecond), written)
	s.waitAccepted(int64(len(warm)+written), time.Minute)
	s.waitCommitted(time.Minute)
	w.stop(t)
	recs := s.dlqRecords()
	if len(recs) != 1 {
		t.Fatalf("%d DLQ records, want 1", len(recs))
	}
	e, ok, err := dlq.Parse(recs[0].Headers)
	if !ok || err != nil {
		t.Fatalf("DLQ headers: %v %v", ok, err)
	}
	t.Logf("DLQ entry: reason %s status %d attempts %d", e.Reason, e.Status, e.Attempts)
	if string(recs[0].Key) != "poison" || e.Reason != "retries_exhausted" || e.Status != 500 || e.Attempts < 4 || e.CorrelationID != "poison-1" {
		t.Errorf("DLQ record %s: %+v; want the poison record, retries_exhausted, status 500, at least 4 attempts", recs[0].Key, e)
	}
	if st := s.sim.Stats(); st.Distinct != int64(len(warm)+written) || st.ByStatus[500] != int64(e.Attempts) {
		t.Errorf("simulator %+v: want %d distinct accepted and %d answers 500", st, len(warm)+written, e.Attempts)
	}
}
