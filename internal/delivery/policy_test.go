package delivery_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/event"
)

// The outcome policy at the shipped defaults, on synctest's fake clock:
// the Sender is a fake CXone whose answers depend on the time and the
// correlation id, so that hours of outage take no real time.

// shippedConfig is the delivery configuration the worker builds from the
// default settings (the same mapping as bridge.NewPublisher).
func shippedConfig(t *testing.T) delivery.Config {
	t.Helper()
	var c config.CXone
	fs := config.NewFlagSet("test")
	c.Register(fs)
	if err := fs.Parse(nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	return delivery.Config{
		MaxRetries: c.MaxRetries, BackoffBase: c.RetryBackoff, MaxBackoff: c.MaxBackoff,
		Breaker: delivery.BreakerConfig{Failures: uint32(c.BreakerFailures), OpenTimeout: c.BreakerOpenTimeout,
			HalfOpenProbes: uint32(c.BreakerProbes)},
		RateLimit: c.RateLimit,
	}
}

// staticTokens always has the same token.
type staticTokens struct{}

func (staticTokens) Token(ctx context.Context) (string, error) { return "tok", ctx.Err() }
func (staticTokens) Invalidate(string)                         {}
func (staticTokens) NextTry() time.Time                        { return time.Time{} }

// fakeCXone answers attempts with answer(time since start, correlation id)
// after latency; it counts attempts by correlation id.
type fakeCXone struct {
	start   time.Time
	latency time.Duration
	answer  func(at time.Duration, id string) cxone.Class

	mu       sync.Mutex
	attempts map[string]int
}

func (f *fakeCXone) Attempt(ctx context.Context, _ string, ev *event.Event, _ []byte) cxone.Result {
	f.mu.Lock()
	f.attempts[ev.CorrelationID]++
	f.mu.Unlock()
	class := f.answer(time.Since(f.start), ev.CorrelationID)
	wait := f.latency
	switch {
	case class == cxone.Timeout:
		wait = 15 * time.Second // the default --cxone-timeout
	case ev.CorrelationID == "poison":
		wait = 10 * f.latency // CXone works on it a while, then fails: others are answered meanwhile
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return cxone.Result{Class: cxone.Canceled, Err: ctx.Err()}
	}
	res := cxone.Result{Class: class}
	switch class {
	case cxone.Accepted:
		res.Status = 200
	case cxone.ServerError:
		res.Status = 503
	case cxone.Redirect:
		res.Status = 302
		res.Err = &cxone.RedirectError{Status: 302, Location: "https://elsewhere.example/"}
	case cxone.RateLimited:
		res.Status, res.RetryAfter, res.HasRetryAfter = 429, time.Second, true
	case cxone.Unauthorized:
		res.Status = 401
	case cxone.Rejected:
		res.Status = 400
	case cxone.Timeout:
		res.Err = context.DeadlineExceeded
	case cxone.NetworkError:
		res.Err = fmt.Errorf("connection refused")
	}
	return res
}

func (f *fakeCXone) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[id]
}

// down answers class until d has passed, then accepts (for ids in only,
// when only is set; others are always accepted).
func down(class cxone.Class, d time.Duration, only ...string) func(time.Duration, string) cxone.Class {
	return func(at time.Duration, id string) cxone.Class {
		if len(only) > 0 && id != only[0] {
			return cxone.Accepted
		}
		if at < d {
			return class
		}
		return cxone.Accepted
	}
}

func TestPolicyAtDefaults(t *testing.T) {
	t.Parallel()
	const outage = 10 * time.Minute
	accepted, canceled, retriesExhausted := string(delivery.Accepted), string(delivery.Canceled), string(event.ReasonRetriesExhausted)
	type rec struct {
		id   string
		at   time.Duration // when it arrives
		want string        // the outcome's Label: accepted, canceled or the DLQ reason
		// minAttempts: at least this many attempts (more than the retry
		// budget shows that waiting out an outage spent nothing).
		minAttempts, exactAttempts int
		errHas                     string // the outcome's error holds this
	}
	flap := func(down, up time.Duration) func(time.Duration, string) cxone.Class {
		return func(at time.Duration, _ string) cxone.Class {
			if at < time.Minute && at%(down+up) < down {
				return cxone.ServerError
			}
			return cxone.Accepted
		}
	}
	flowing := func(every time.Duration) []rec { // records arriving all through the minute and after
		var rs []rec
		for i := range int(70 * time.Second / every) {
			rs = append(rs, rec{id: fmt.Sprint("f", i), at: time.Duration(i) * every, want: accepted})
		}
		return rs
	}
	poisonWith := func(class cxone.Class) func(time.Duration, string) cxone.Class {
		return func(_ time.Duration, id string) cxone.Class {
			if id == "poison" {
				return class
			}
			return cxone.Accepted
		}
	}
	poison := poisonWith(cxone.ServerError)
	cases := []struct {
		name     string
		answer   func(time.Duration, string) cxone.Class
		recs     []rec
		traffic  bool          // healthy records published one after the other meanwhile
		deadline time.Duration // Publish's context
	}{
		{name: "503 outage, one record", answer: down(cxone.ServerError, outage),
			recs: []rec{{id: "r1", want: accepted, minAttempts: 6}}},
		{name: "503 outage, three records", answer: down(cxone.ServerError, outage),
			recs: []rec{{id: "r1", want: accepted}, {id: "r2", want: accepted}, {id: "r3", want: accepted}}},
		{name: "timeouts", answer: down(cxone.Timeout, outage),
			recs: []rec{{id: "r1", want: accepted, minAttempts: 6}}},
		{name: "network errors", answer: down(cxone.NetworkError, outage),
			recs: []rec{{id: "r1", want: accepted, minAttempts: 6}}},
		{name: "redirects", answer: down(cxone.Redirect, outage),
			recs: []rec{{id: "r1", want: accepted, minAttempts: 6}}},
		{name: "429 storm", answer: down(cxone.RateLimited, outage),
			recs: []rec{{id: "r1", want: accepted, minAttempts: 6}}},
		{name: "401 with every token", answer: down(cxone.Unauthorized, outage),
			recs: []rec{{id: "r1", want: accepted, minAttempts: 6}}},
		{name: "flapping 5 s down, 5 s up, for a minute", answer: flap(5*time.Second, 5*time.Second), recs: flowing(100 * time.Millisecond)},
		// Its period is not the breaker's open timeout: the breaker closes
		// in up phases and records are in flight when CXone goes down.
		{name: "flapping 5 s down, 8 s up, for a minute", answer: flap(5*time.Second, 8*time.Second), recs: flowing(100 * time.Millisecond)},
		{name: "flapping 3 s down, 2 s up, for a minute", answer: flap(3*time.Second, 2*time.Second), recs: flowing(100 * time.Millisecond)},
		{name: "poison record while others are accepted", answer: poison, traffic: true,
			recs: []rec{{id: "poison", want: retriesExhausted, exactAttempts: 4}}},
		{name: "record redirected while others are accepted", answer: poisonWith(cxone.Redirect), traffic: true,
			recs: []rec{{id: "poison", want: retriesExhausted, exactAttempts: 4, errHas: "Location https://elsewhere.example/"}}},
		{name: "poison record alone waits (the trade-off)", answer: poison, deadline: time.Hour,
			recs: []rec{{id: "poison", want: canceled, minAttempts: 6}}},
		{name: "outage, then a poison record among others", traffic: true,
			answer: func(at time.Duration, id string) cxone.Class {
				if at < outage || id == "poison" {
					return cxone.ServerError
				}
				return cxone.Accepted
			},
			recs: []rec{{id: "poison", want: retriesExhausted, minAttempts: 6}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				f := &fakeCXone{start: time.Now(), latency: 20 * time.Millisecond, answer: tc.answer, attempts: map[string]int{}}
				pub := delivery.New(shippedConfig(t), f, staticTokens{})
				deadline := tc.deadline
				if deadline == 0 {
					deadline = 24 * time.Hour
				}
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				outs := make([]delivery.Outcome, len(tc.recs))
				var wg sync.WaitGroup
				for i, r := range tc.recs {
					wg.Go(func() {
						time.Sleep(r.at)
						outs[i] = pub.Publish(ctx, &event.Event{CorrelationID: r.id, EventType: "t", Source: "s"})
					})
				}
				stop := make(chan struct{})
				var traffic sync.WaitGroup
				if tc.traffic {
					traffic.Go(func() {
						for n := 0; ; n++ {
							select {
							case <-stop:
								return
							case <-time.After(50 * time.Millisecond):
							}
							if out := pub.Publish(ctx, &event.Event{CorrelationID: fmt.Sprint("healthy-", n)}); out.Result != delivery.Accepted {
								t.Errorf("healthy record %d: %s", n, out.Label())
							}
						}
					})
				}
				wg.Wait()
				close(stop)
				traffic.Wait()
				for i, r := range tc.recs {
					out := outs[i]
					if out.Label() != r.want {
						t.Errorf("%s: %s after %d attempts (status %d, err %v), want %s", r.id, out.Label(), out.Attempts, out.Status, out.Err, r.want)
					}
					if out.Attempts != f.count(r.id) {
						t.Errorf("%s: outcome says %d attempts, CXone saw %d", r.id, out.Attempts, f.count(r.id))
					}
					if out.Attempts < r.minAttempts {
						t.Errorf("%s: %d attempts, want at least %d", r.id, out.Attempts, r.minAttempts)
					}
					if r.errHas != "" && (out.Err == nil || !strings.Contains(out.Err.Error(), r.errHas)) {
						t.Errorf("%s: error %v, want it to hold %q", r.id, out.Err, r.errHas)
					}
					if r.exactAttempts > 0 && out.Attempts != r.exactAttempts {
						t.Errorf("%s: %d attempts, want %d", r.id, out.Attempts, r.exactAttempts)
					}
				}
			})
		})
	}
}

// ctlSender holds every attempt until the test answers it, so that the
// order in which attempts are sent and answered is the test's.
type ctlSender struct {
	mu      sync.Mutex
	pending map[string]chan cxone.Result
	sent    map[string]int
	// auto, when set, answers the attempts it reports true for at once.
	auto func(id string) (cxone.Result, bool)
}

func newCtlSender() *ctlSender {
	return &ctlSender{pending: map[string]chan cxone.Result{}, sent: map[string]int{}}
}

func (s *ctlSender) Attempt(ctx context.Context, _ string, ev *event.Event, _ []byte) cxone.Result {
	ch := make(chan cxone.Result, 1)
	s.mu.Lock()
	s.sent[ev.CorrelationID]++
	if s.auto != nil {
		if r, ok := s.auto(ev.CorrelationID); ok {
			s.mu.Unlock()
			return r
		}
	}
	s.pending[ev.CorrelationID] = ch
	s.mu.Unlock()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return cxone.Result{Class: cxone.Canceled}
	}
}

// count returns how many attempts of id were sent.
func (s *ctlSender) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[id]
}

// inFlight reports whether id has an attempt waiting for its answer.
func (s *ctlSender) inFlight(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	return ok
}

// answer answers id's attempt in flight and waits until every goroutine
// of the bubble is blocked again (the answer is dealt with).
func (s *ctlSender) answer(t *testing.T, id string, class cxone.Class, status int) {
	t.Helper()
	s.mu.Lock()
	ch, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if !ok {
		t.Fatalf("no attempt of %s in flight", id)
	}
	ch <- cxone.Result{Class: class, Status: status}
	synctest.Wait()
}

// awaitAttempt lets the fake clock run until id has an attempt in flight.
func (s *ctlSender) awaitAttempt(t *testing.T, id string) {
	t.Helper()
	for start := time.Now(); !s.inFlight(id); time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > time.Hour {
			t.Fatalf("no attempt of %s within an hour", id)
		}
	}
}

// The evidence rule, attempt by attempt, on the fake clock. A failed
// attempt of P spends its retry budget only when CXone answered other
// publishes normally (2xx or a 4xx verdict) while it was out: one sent
// after it, answered before its failure came back; or one on each side of
// it — sent at most 1 s before it and answered before its failure, and sent
// after it and answered within 1 s of its failure. One side alone (the
// start or the end of an outage) is no evidence. P fails 3 times without
// evidence, then 4 times with: retries_exhausted on its 7th attempt, at the
// default budget of 3 retries.
func TestEvidenceRule(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newCtlSender()
		pub := delivery.New(shippedConfig(t), s, staticTokens{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		defer wg.Wait()
		n := 0
		publish := func() string { // another record; returns once its attempt is out
			n++
			id := fmt.Sprint("Q", n)
			wg.Go(func() { pub.Publish(ctx, &event.Event{CorrelationID: id}) })
			s.awaitAttempt(t, id)
			return id
		}
		// healthyUntilP keeps CXone visibly working (a publish accepted
		// every 500 ms) until P's next attempt is out.
		healthyUntilP := func() {
			t.Helper()
			for start := time.Now(); !s.inFlight("P"); time.Sleep(500 * time.Millisecond) {
				if time.Since(start) > time.Hour {
					t.Fatal("no attempt of P within an hour")
				}
				s.answer(t, publish(), cxone.Accepted, 200)
			}
		}
		pDone := make(chan delivery.Outcome, 1)
		notYet := func(step string) {
			t.Helper()
			select {
			case out := <-pDone:
				t.Fatalf("%s: P settled early: %s after %d attempts", step, out.Label(), out.Attempts)
			default:
			}
		}

		// 1. The start of an outage: CXone accepted a publish sent just
		// before P's attempt, and nothing after it. No evidence.
		q := publish()
		go func() { pDone <- pub.Publish(ctx, &event.Event{CorrelationID: "P"}) }()
		s.awaitAttempt(t, "P")
		s.answer(t, q, cxone.Accepted, 200)
		s.answer(t, "P", cxone.ServerError, 503)
		time.Sleep(1500 * time.Millisecond) // past the margin: P has judged
		notYet("start of an outage")

		// 2. The end of an outage: nothing answered normally in the second
		// before P's attempt; one sent after it is accepted just after P
		// fails. No evidence.
		s.awaitAttempt(t, "P")
		q = publish()
		s.answer(t, "P", cxone.ServerError, 503)
		s.answer(t, q, cxone.Accepted, 200)
		time.Sleep(1500 * time.Millisecond)
		notYet("end of an outage")

		// 3. Both sides, but the publish after P is answered 1.5 s after
		// P's failure, past the margin. No evidence.
		healthyUntilP()
		s.answer(t, "P", cxone.ServerError, 503)
		time.Sleep(1500 * time.Millisecond)
		s.answer(t, publish(), cxone.Accepted, 200)
		notYet("the other side too late")

		// 4. Both sides within the margin: evidence (1 spent).
		healthyUntilP()
		s.answer(t, "P", cxone.ServerError, 503)
		s.answer(t, publish(), cxone.Accepted, 200)
		time.Sleep(1500 * time.Millisecond)
		notYet("around its flight")

		// 5-7. Inside P's flight: a publish sent after P's attempt answered
		// normally (200, a 400 verdict, a 403 verdict) before P fails:
		// evidence each time (2, 3, 4 spent: exhausted).
		for i, v := range []struct {
			class  cxone.Class
			status int
		}{{cxone.Accepted, 200}, {cxone.Rejected, 400}, {cxone.Forbidden, 403}} {
			notYet(fmt.Sprint("inside its flight ", i))
			s.awaitAttempt(t, "P")
			s.answer(t, publish(), v.class, v.status)
			s.answer(t, "P", cxone.ServerError, 500)
		}
		out := <-pDone
		if out.Reason != event.ReasonRetriesExhausted || out.Attempts != 7 || out.Status != 500 {
			t.Fatalf("P: %s after %d attempts, status %d; want retries_exhausted after 7 (3 without evidence, 4 with)", out.Label(), out.Attempts, out.Status)
		}
	})
}

// Other publishes answered 429 (or 401) while P's attempts are out are not
// CXone answering normally: P is never dead-lettered for them.
func TestEvidenceIgnoresThrottlingAndAuth(t *testing.T) {
	t.Parallel()
	for _, other := range []struct {
		class  cxone.Class
		status int
	}{{cxone.RateLimited, 429}, {cxone.Unauthorized, 401}} {
		t.Run(fmt.Sprint(other.status), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := newCtlSender()
				s.auto = func(id string) (cxone.Result, bool) { // every other attempt: answered at once
					return cxone.Result{Class: other.class, Status: other.status}, id != "P"
				}
				// The breaker would open on these failures and keep the
				// other publishes from being sent while P's attempts are
				// out; what their answers mean is the point here.
				cfg := shippedConfig(t)
				cfg.Breaker.Failures = 1000
				pub := delivery.New(cfg, s, staticTokens{})
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				pDone := make(chan delivery.Outcome, 1)
				go func() { pDone <- pub.Publish(ctx, &event.Event{CorrelationID: "P"}) }()
				for i := range 8 { // twice the budget
					for start := time.Now(); !s.inFlight("P"); { // P's next attempt, unless P settled
						if time.Since(start) > time.Hour {
							t.Fatalf("no attempt %d of P within an hour", i+1)
						}
						select {
						case out := <-pDone:
							t.Fatalf("P settled after %d failures: %s after %d attempts", i, out.Label(), out.Attempts)
						case <-time.After(50 * time.Millisecond):
						}
					}
					id := fmt.Sprint("Q", i)
					wg.Go(func() { pub.Publish(ctx, &event.Event{CorrelationID: id}) }) // keeps trying until canceled
					for start := time.Now(); s.count(id) == 0; time.Sleep(10 * time.Millisecond) {
						if time.Since(start) > time.Hour {
							t.Fatalf("no attempt of %s within an hour", id)
						}
					}
					s.answer(t, "P", cxone.ServerError, 503)
				}
				select {
				case out := <-pDone:
					t.Fatalf("P settled: %s after %d attempts", out.Label(), out.Attempts)
				default:
				}
				cancel()
				if out := <-pDone; out.Result != delivery.Canceled || out.Attempts != 8 {
					t.Fatalf("P: %s after %d attempts, want canceled after 8", out.Label(), out.Attempts)
				}
				wg.Wait()
			})
		})
	}
}
