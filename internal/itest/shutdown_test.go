package itest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// shipped sets the group's timings and the drain budgets to the shipped
// defaults (the stack's settings shorten them to speed other tests up).
func shipped(st *bridge.Settings) {
	var d bridge.Settings
	fs := config.NewFlagSet("defaults")
	d.Kafka.Register(fs)
	d.Worker.Register(fs)
	if err := fs.Parse(nil, io.Discard); err != nil {
		panic(err)
	}
	st.Kafka.SessionTimeout, st.Kafka.RebalanceTimeout, st.Kafka.HeartbeatInterval = d.Kafka.SessionTimeout, d.Kafka.RebalanceTimeout, d.Kafka.HeartbeatInterval
	st.Worker.DrainTimeout, st.Worker.ShutdownTimeout, st.Worker.CommitInterval = d.Worker.DrainTimeout, d.Worker.ShutdownTimeout, d.Worker.CommitInterval
	st.JoinBackoff, st.PartitionWatchInterval = 0, 0
}

// publishLog records, per worker, every publish CXone accepted: its key
// and when the request started and ended.
type publishLog struct {
	mu   sync.Mutex
	pubs map[string][]publish // by data.key
}

type publish struct {
	worker     string
	start, end time.Time
}

// serve returns a CXone URL for worker that goes to the stack's simulator
// and logs what it accepts.
func (l *publishLog) serve(t *testing.T, s *stack, worker string) string {
	h := s.sim.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/events/publish" {
			h.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var ev struct {
			Data struct {
				Key string `json:"key"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &ev)
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusOK && ev.Data.Key != "" {
			l.mu.Lock()
			l.pubs[ev.Data.Key] = append(l.pubs[ev.Data.Key], publish{worker: worker, start: start, end: time.Now()})
			l.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// overlaps returns the keys that first published and then published
// both, with a publish of then starting before one of first ended.
func (l *publishLog) overlaps(first, then string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for key, pubs := range l.pubs {
		var lastEnd, firstStart time.Time
		for _, p := range pubs {
			switch p.worker {
			case first:
				if p.end.After(lastEnd) {
					lastEnd = p.end
				}
			case then:
				if firstStart.IsZero() || p.start.Before(firstStart) {
					firstStart = p.start
				}
			}
		}
		if !lastEnd.IsZero() && !firstStart.IsZero() && firstStart.Before(lastEnd) {
			out = append(out, key)
		}
	}
	return out
}

// watchPartitions records when worker r first holds n partitions.
func watchPartitions(t *testing.T, r *running, n int) func() time.Time {
	var mu sync.Mutex
	var at time.Time
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			if st := r.w.Consumer().Status(); st.Joined && len(st.Partitions) == n {
				mu.Lock()
				at = time.Now()
				mu.Unlock()
				return
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
}

// SIGTERM while CXone's 429 gate holds the worker's records longer than
// the session timeout: the worker stays a member of the group while it
// drains (its heartbeats and commits go on), publishes what it holds once
// the gate opens, commits — the commit is accepted — and then leaves; the
// other worker takes its partitions over after the leave, within a
// heartbeat and a drain, not after a session timeout, and starts where the
// leaving one committed: no key is published by both at once, nothing is
// published twice, nothing is lost, each key stays in order. The group's
// timings are the shipped defaults.
//
// Before, the group was closed first: the draining worker sent no
// heartbeat, the coordinator expired it after the session timeout (6 s),
// the other worker took its partitions over from the last commit while it
// still held their records, both published them when the gate opened, and
// the leaving worker's final commit was refused.
func TestShutdownDrainKeepsTheMembership(t *testing.T) {
	const keys, per = 60, 10
	s := newStack(t, 6, sim.Config{Faults: sim.Faults{Latency: sim.Duration(2 * time.Millisecond)}})
	cx := shippedCXone(t) // the shipped --max-backoff (30 s) lets the gate hold for the whole Retry-After
	log := &publishLog{pubs: map[string][]publish{}}
	urlA, urlB := log.serve(t, s, "a"), log.serve(t, s, "b")
	a := s.startWorker(func(st *bridge.Settings) { shipped(st); cx(st); st.CXone.BaseURL = urlA })
	b := s.startWorker(func(st *bridge.Settings) { shipped(st); cx(st); st.CXone.BaseURL = urlB })
	testutil.WaitFor(t, 30*time.Second, "a and b holding 3 partitions each of one generation", func() bool {
		sa, sb := a.w.Consumer().Status(), b.w.Consumer().Status()
		return sa.Joined && sb.Joined && sa.Generation == sb.Generation && len(sa.Partitions) == 3 && len(sb.Partitions) == 3
	})
	bAll := watchPartitions(t, b, 6)

	// The gate: every publish answered 429 with Retry-After 12 s, longer
	// than the session timeout (6 s) and the drain timeout (3 s).
	const retryAfter = 12 * time.Second
	recs := keyedRecords(keys, per, 31)
	tf := time.Now()
	s.sim.SetFaults(sim.Faults{ForceStatus: http.StatusTooManyRequests, RetryAfter: "12"})
	s.write(recs)
	testutil.WaitFor(t, 10*time.Second, "a and b holding records at the closed gate", func() bool {
		return a.w.InFlight() > 0 && b.w.InFlight() > 0 && s.sim.Stats().ByStatus[http.StatusTooManyRequests] > 0
	})
	held := a.w.InFlight()
	t0 := time.Now()
	a.cancel() // SIGTERM
	// CXone recovers before the gate opens again.
	time.AfterFunc(retryAfter-2*time.Second-time.Since(tf), func() { s.sim.SetFaults(sim.Faults{Latency: sim.Duration(2 * time.Millisecond)}) })
	select {
	case <-a.done:
	case <-time.After(45 * time.Second):
		t.Fatal("a did not stop within its shutdown timeout (30 s) and 15 s")
	}
	tLeft := time.Now()
	if a.err != nil {
		t.Errorf("a: %v", a.err)
	}
	t.Logf("a held %d records at SIGTERM and left %v later", held, tLeft.Sub(t0).Round(time.Millisecond))
	testutil.WaitFor(t, 20*time.Second, "b holding all 6 partitions", func() bool { return !bAll().IsZero() })
	took := bAll().Sub(tLeft)
	t.Logf("b held all 6 partitions %v after a left", took.Round(time.Millisecond))
	s.waitCommitted(time.Minute)
	b.stop(t)

	if fails, _ := a.metric("cxbridge_commit_failures_total", ""); fails != 0 {
		t.Errorf("a: %v commits refused, want none: its final commit must be accepted", fails)
	}
	if commits, _ := a.metric("cxbridge_commits_total", ""); commits == 0 {
		t.Error("a committed nothing")
	}
	if bAll().Before(tLeft) {
		t.Errorf("b held all 6 partitions %v before a left: it took a's partitions over while a was draining", tLeft.Sub(bAll()))
	}
	session := 6 * time.Second
	if took >= session {
		t.Errorf("b held all 6 partitions %v after a left, want less than the session timeout (%v): it waited for a's expiry, not its leave", took, session)
	}
	if k := log.overlaps("a", "b"); len(k) > 0 {
		t.Errorf("%d keys published by b before a's last publish of them ended (e.g. %s): both members published them at once", len(k), k[0])
	}
	st := s.sim.Stats()
	t.Logf("simulator %+v", st)
	if st.Distinct != int64(len(recs)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(recs))
	}
	if st.Duplicates != 0 {
		t.Errorf("%d events published twice: b started before what a published was committed", st.Duplicates)
	}
	s.checkKeys(keys, per)
}

// A rebalance during the shutdown drain caps what is left of it at
// --drain-timeout: once the generation has ended the member sends no
// heartbeat, and the others take its partitions over soon, so it must not
// go on publishing them. Worker a is stopped while CXone's 429 gate holds
// its records (Retry-After 10 s, its shutdown budget is 30 s); a second
// later worker c joins: a gives its records up within a heartbeat and the
// drain timeout of c's join, long before the gate opens, commits and
// leaves; b and c then publish everything, each key in order, and no key
// is published by a and another member at once. Shipped timings.
func TestShutdownDrainCappedByARebalance(t *testing.T) {
	const keys, per = 60, 10
	s := newStack(t, 6, sim.Config{Faults: sim.Faults{Latency: sim.Duration(2 * time.Millisecond)}})
	log := &publishLog{pubs: map[string][]publish{}}
	urls := map[string]string{"a": log.serve(t, s, "a"), "b": log.serve(t, s, "b"), "c": log.serve(t, s, "c")}
	cx := shippedCXone(t) // the shipped --max-backoff (30 s) lets the gate hold for the whole Retry-After
	start := func(name string) *running {
		return s.startWorker(func(st *bridge.Settings) { shipped(st); cx(st); st.CXone.BaseURL = urls[name] })
	}
	a, b := start("a"), start("b")
	testutil.WaitFor(t, 30*time.Second, "a and b holding 3 partitions each of one generation", func() bool {
		sa, sb := a.w.Consumer().Status(), b.w.Consumer().Status()
		return sa.Joined && sb.Joined && sa.Generation == sb.Generation && len(sa.Partitions) == 3 && len(sb.Partitions) == 3
	})
	const retryAfter = 10 * time.Second
	recs := keyedRecords(keys, per, 41)
	tf := time.Now()
	s.sim.SetFaults(sim.Faults{ForceStatus: http.StatusTooManyRequests, RetryAfter: "10"})
	s.write(recs)
	testutil.WaitFor(t, 5*time.Second, "a holding records at the closed gate", func() bool {
		return a.w.InFlight() > 0 && s.sim.Stats().ByStatus[http.StatusTooManyRequests] > 0
	})
	a.cancel() // SIGTERM: a drains, still a member, until c's join ends its generation
	tc := time.Now()
	c := start("c")
	select {
	case <-a.done:
	case <-time.After(retryAfter):
		t.Fatal("a still draining 10 s after c joined: the rebalance did not cap its drain")
	}
	took := time.Since(tc)
	if a.err != nil {
		t.Errorf("a: %v", a.err)
	}
	// c's join is seen at a's next heartbeat (1 s); then the drain timeout
	// (3 s), the final commit and the leave.
	t.Logf("a left %v after c joined (gate open again %v after the 429s began)", took.Round(time.Millisecond), retryAfter)
	if limit := time.Second + 3*time.Second + 2*time.Second; took > limit || took < 3*time.Second {
		t.Errorf("a left %v after c joined, want between the drain timeout (3 s) and %v (a heartbeat, the drain timeout and 2 s)", took, limit)
	}
	if time.Since(tf) >= retryAfter {
		t.Errorf("a left %v after the gate closed, after it opened again (%v): its drain was not capped", time.Since(tf), retryAfter)
	}
	s.sim.SetFaults(sim.Faults{Latency: sim.Duration(2 * time.Millisecond)})
	s.waitAccepted(int64(len(recs)), time.Minute)
	s.waitCommitted(time.Minute)
	b.stop(t)
	c.stop(t)

	for _, other := range []string{"b", "c"} {
		if k := log.overlaps("a", other); len(k) > 0 {
			t.Errorf("%d keys published by %s before a's last publish of them ended (e.g. %s)", len(k), other, k[0])
		}
	}
	st := s.sim.Stats()
	t.Logf("simulator %+v", st)
	if st.Distinct != int64(len(recs)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(recs))
	}
	s.checkKeys(keys, per)
}
