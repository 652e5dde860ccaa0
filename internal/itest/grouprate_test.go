package itest

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// acceptLog keeps the time of every publish the simulator answered 200.
type acceptLog struct {
	mu    sync.Mutex
	times []time.Time
}

// wrap returns w, noting the time when it answers 200.
func (l *acceptLog) wrap(w http.ResponseWriter) http.ResponseWriter {
	return &acceptWriter{ResponseWriter: w, log: l}
}

type acceptWriter struct {
	http.ResponseWriter
	log  *acceptLog
	done bool
}

func (a *acceptWriter) WriteHeader(code int) {
	if !a.done {
		a.done = true
		if code == http.StatusOK {
			a.log.mu.Lock()
			a.log.times = append(a.log.times, time.Now())
			a.log.mu.Unlock()
		}
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *acceptWriter) Write(p []byte) (int, error) {
	if !a.done {
		a.WriteHeader(http.StatusOK)
	}
	return a.ResponseWriter.Write(p)
}

// between counts the acceptances in [from, to).
func (l *acceptLog) between(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, t := range l.times {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// busiest is the most acceptances in any window of d within [from, to).
func (l *acceptLog) busiest(from, to time.Time, d time.Duration) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var in []time.Time
	for _, t := range l.times {
		if !t.Before(from) && t.Before(to) {
			in = append(in, t)
		}
	}
	most, j := 0, 0
	for i := range in { // times are appended in order, give or take a goroutine switch
		for j < len(in) && in[j].Sub(in[i]) < d {
			j++
		}
		most = max(most, j-i)
	}
	return most
}

// --rate-limit is the quota of the whole group: 3 workers on 6 partitions
// publish at most that together, each a third of it; when one stops, the
// two left take half each, and the last one alone takes all of it. The
// rates are the simulator's: acceptances counted over windows of its own
// answer times, with a backlog far beyond the limit throughout. (The
// setting is off by default; this test is about the setting.)
func TestRateLimitIsTheGroups(t *testing.T) {
	const limit = 120.0
	s := newStack(t, 6, sim.Config{Faults: sim.Faults{Latency: sim.Duration(2 * time.Millisecond)}})
	s.write(keyedRecords(300, 30, 41)) // 9,000 records: 75 s at the limit
	withLimit := func(st *bridge.Settings) { st.CXone.RateLimit = limit }
	ws := []*running{s.startWorker(withLimit), s.startWorker(withLimit), s.startWorker(withLimit)}

	// measure waits until the running workers hold all 6 partitions in one
	// generation, each with some, lets the rebalance settle, and counts
	// the acceptances of the next 6 s.
	measure := func(phase string, rs []*running) {
		t.Helper()
		testutil.WaitFor(t, 60*time.Second, phase+": the workers holding all 6 partitions in one generation", func() bool {
			held, gen := 0, int32(-1)
			for _, r := range rs {
				st := r.w.Consumer().Status()
				if !st.Joined || len(st.Partitions) == 0 || (gen >= 0 && st.Generation != gen) {
					return false
				}
				held, gen = held+len(st.Partitions), st.Generation
			}
			return held == 6
		})
		// A measuring window's margin, not a wait for an event: records of
		// the revoked partitions drained at the old share for a while.
		time.Sleep(2 * time.Second)
		var limits []float64
		for _, r := range rs {
			l, _ := r.metric("cxbridge_rate_limit_per_second", "")
			limits = append(limits, l)
		}
		from := time.Now()
		time.Sleep(6 * time.Second) // the measuring window
		to := time.Now()
		n := s.accepts.between(from, to)
		rate := float64(n) / to.Sub(from).Seconds()
		peak := s.accepts.busiest(from, to, time.Second)
		t.Logf("%s: limits %v; the simulator accepted %d in %v (%.0f/s), at most %d in one second", phase, limits, n, to.Sub(from).Round(time.Millisecond), rate, peak)
		if rate > limit*1.05 || rate < limit*0.8 {
			t.Errorf("%s: the simulator accepted %.0f/s, want about the group's limit %v (0.8–1.05 ×)", phase, rate, limit)
		}
		if float64(peak) > limit*1.2 {
			t.Errorf("%s: %d accepted in one second, want at most 1.2 × the group's limit %v", phase, peak, limit)
		}
		var sum float64
		for _, l := range limits {
			sum += l
		}
		if sum > limit*1.01 || sum < limit*0.99 {
			t.Errorf("%s: the members' limits %v add up to %v, want the group's %v", phase, limits, sum, limit)
		}
	}
	measure("3 workers", ws)
	ws[2].stop(t)
	measure("2 workers", ws[:2])
	ws[1].stop(t)
	measure("1 worker", ws[:1])
	ws[0].stop(t)
	if st := s.sim.Stats(); st.ByStatus[http.StatusTooManyRequests] != 0 || st.OrderViolations != 0 {
		t.Errorf("simulator %+v: want no 429 (CXone set no limit) and no order violation", st)
	}
}
