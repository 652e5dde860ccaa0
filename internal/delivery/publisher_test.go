package delivery_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
	"github.com/cxbridge/cxbridge/internal/testutil/simcx"
)

// harness is a publisher talking to a simulator over real HTTP.
type harness struct {
	sim    *sim.Server
	pub    *delivery.Publisher
	tokens *cxone.Tokens
	logs   *testutil.SyncBuffer

	mu          sync.Mutex
	attempts    [][2]time.Time // start and end of each HTTP attempt
	transitions []string
	changedAt   []time.Time // when each transition happened
}

func newHarness(t *testing.T, simCfg sim.Config, cfg delivery.Config) *harness {
	t.Helper()
	h := &harness{sim: sim.New(simCfg), logs: &testutil.SyncBuffer{}}
	srv := httptest.NewServer(h.sim.Handler())
	t.Cleanup(srv.Close)
	hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 300})
	t.Cleanup(hc.CloseIdleConnections)
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.tokens = simcx.Tokens(t, hc, srv.URL, cxone.TokensConfig{Logger: log, RetryMin: 10 * time.Millisecond})
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 3 // the settings' default; -1 for none
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 10 * time.Millisecond
	}
	cfg.Logger = log
	cfg.Hooks.BreakerState = func(from, to gobreaker.State) {
		h.mu.Lock()
		h.transitions = append(h.transitions, to.String())
		h.changedAt = append(h.changedAt, time.Now())
		h.mu.Unlock()
	}
	h.pub = delivery.New(cfg, &timedSender{Sender: cxone.NewClient(hc, srv.URL, 5*time.Second), h: h}, h.tokens)
	return h
}

// timedSender is the real client, noting when each attempt starts and ends.
type timedSender struct {
	delivery.Sender
	h *harness
}

func (s *timedSender) Attempt(ctx context.Context, token string, ev *event.Event, body []byte) cxone.Result {
	start := time.Now()
	res := s.Sender.Attempt(ctx, token, ev, body)
	s.h.mu.Lock()
	s.h.attempts = append(s.h.attempts, [2]time.Time{start, time.Now()})
	s.h.mu.Unlock()
	return res
}

// attemptsStarted returns how many HTTP attempts (finished ones) started in
// [from, to).
func (h *harness) attemptsStarted(from, to time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, a := range h.attempts {
		if !a[0].Before(from) && a[0].Before(to) {
			n++
		}
	}
	return n
}

// await returns the outcome done delivers; the test fails after d.
func await(t *testing.T, done <-chan delivery.Outcome, d time.Duration) delivery.Outcome {
	t.Helper()
	select {
	case out := <-done:
		return out
	case <-time.After(d):
		t.Fatalf("Publish did not return within %v", d)
		return delivery.Outcome{}
	}
}

func (h *harness) states() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.transitions, ",")
}

var seq atomic.Int64

func newEvent() *event.Event {
	n := seq.Add(1)
	return &event.Event{
		EventType: "custom.user.action", Source: "checkout-service",
		Timestamp:     "2026-11-28T10:00:00.123Z",
		CorrelationID: fmt.Sprintf("corr-%d", n), TraceID: fmt.Sprintf("trace-%d", n),
		Data: []byte(`{"action":"checkout_initiated","cartValue":129.99}`),
	}
}

func mustAccept(t *testing.T, out delivery.Outcome) {
	t.Helper()
	if out.Result != delivery.Accepted {
		t.Fatalf("outcome %s (status %d, body %q, err %v), want accepted", out.Label(), out.Status, out.Body, out.Err)
	}
}

// The happy path sends the contract's headers and body; the simulator checks
// the token and the body, and the test checks every header it recorded.
func TestPublishHappyPathHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{})
	ev := newEvent()
	out := h.pub.Publish(context.Background(), ev)
	mustAccept(t, out)
	if out.Attempts != 1 || out.Status != 200 || out.FirstAttempt.IsZero() {
		t.Fatalf("outcome %+v", out)
	}
	got, ok := h.sim.Lookup(ev.CorrelationID)
	if !ok {
		t.Fatal("simulator did not record the event")
	}
	want := map[string]string{
		"Content-Type": "application/json", "X-Correlation-Id": ev.CorrelationID,
		"X-Trace-Id": ev.TraceID, "X-Source-System": ev.Source,
	}
	for k, v := range want {
		if g := got.Headers.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}
	if got.EventType != ev.EventType || got.Timestamp != ev.Timestamp || string(got.Data) != string(ev.Data) {
		t.Errorf("recorded %+v", got)
	}
}

// One token request serves 1,000 publishes from 50 concurrent publishers.
func TestPublishOneTokenForManyPublishes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 50 {
		wg.Go(func() {
			for range 20 {
				if h.pub.Publish(context.Background(), newEvent()).Result != delivery.Accepted {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	st := h.sim.Stats()
	if failed.Load() != 0 || st.Accepted != 1000 || st.Distinct != 1000 {
		t.Fatalf("failed %d, stats %+v", failed.Load(), st)
	}
	if st.TokenRequests != 1 {
		t.Fatalf("%d token requests for 1,000 publishes, want 1", st.TokenRequests)
	}
}

// A short-lived token is refreshed before it expires: no publish ever gets a 401.
func TestPublishEarlyRefresh(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{TokenTTL: 2 * time.Second}, delivery.Config{})
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		mustAccept(t, h.pub.Publish(context.Background(), newEvent()))
		time.Sleep(5 * time.Millisecond)
	}
	st := h.sim.Stats()
	if st.TokenRequests < 2 {
		t.Fatalf("%d token requests in 2.5s with a 2s token, want ≥ 2", st.TokenRequests)
	}
	if st.ByStatus[401] != 0 {
		t.Fatalf("%d publishes got 401: the token was not refreshed early", st.ByStatus[401])
	}
}

// After a 401, 50 concurrent publishers cause exactly one token refresh, then succeed.
func TestPublish401SingleRefresh(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{})
	mustAccept(t, h.pub.Publish(context.Background(), newEvent()))
	h.sim.RevokeTokens()
	var wg sync.WaitGroup
	outs := make([]delivery.Outcome, 50)
	for i := range outs {
		wg.Go(func() { outs[i] = h.pub.Publish(context.Background(), newEvent()) })
	}
	wg.Wait()
	for _, out := range outs {
		mustAccept(t, out)
	}
	st := h.sim.Stats()
	if st.TokenRequests != 2 {
		t.Fatalf("%d token requests, want 2 (the first and one refresh)", st.TokenRequests)
	}
	if st.ByStatus[401] == 0 {
		t.Fatal("no publish got a 401: the test did not test anything")
	}
	if s := h.pub.BreakerState(); s != gobreaker.StateClosed {
		t.Fatalf("breaker %s after one 401 per publisher", s)
	}
}

// A 401 that persists with fresh tokens opens the breaker and dead-letters nothing.
func TestPublishPersistent401OpensBreaker(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Faults: sim.Faults{ForceStatus: 401}},
		delivery.Config{Breaker: delivery.BreakerConfig{Failures: 3, OpenTimeout: time.Hour}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	outs := make([]delivery.Outcome, 5)
	for i := range outs {
		wg.Go(func() { outs[i] = h.pub.Publish(ctx, newEvent()) })
	}
	wg.Wait()
	for _, out := range outs {
		if out.DeadLetter() || out.Result != delivery.Canceled {
			t.Fatalf("outcome %s: an auth outage must not dead-letter", out.Label())
		}
	}
	if s := h.pub.BreakerState(); s != gobreaker.StateOpen {
		t.Fatalf("breaker %s, want open", s)
	}
	if n := h.sim.Stats().ByStatus[401]; n > 20 {
		t.Fatalf("%d requests got 401: the open breaker should have stopped them", n)
	}
}

// 403 is dead-lettered as forbidden at once, without a retry.
func TestPublishForbidden(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Faults: sim.Faults{ForbidEventType: "custom.user.action"}}, delivery.Config{})
	out := h.pub.Publish(context.Background(), newEvent())
	if out.Reason != event.ReasonForbidden || out.Status != 403 || out.Attempts != 1 {
		t.Fatalf("outcome %+v", out)
	}
	if n := h.sim.Stats().Requests; n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

// 400 is dead-lettered as rejected with the answer's body; the breaker counts it a success.
func TestPublishRejectedWithBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{})
	ev := newEvent()
	ev.EventType = "" // breaks the contract: the simulator answers 400 naming the field
	out := h.pub.Publish(context.Background(), ev)
	if out.Reason != event.ReasonRejected || out.Status != 400 || out.Attempts != 1 {
		t.Fatalf("outcome %+v", out)
	}
	if !strings.Contains(out.Body, "eventType") {
		t.Fatalf("body %q does not name the field", out.Body)
	}
	h.sim.SetFaults(sim.Faults{Script: []sim.Response{{Status: 422, Body: strings.Repeat("x", 5000)}}})
	out = h.pub.Publish(context.Background(), newEvent())
	if out.Reason != event.ReasonRejected || out.Status != 422 || len(out.Body) > cxone.MaxErrorBody+len("…") {
		t.Fatalf("422: result %s status %d body %d bytes", out.Label(), out.Status, len(out.Body))
	}
	if s := h.pub.BreakerState(); s != gobreaker.StateClosed {
		t.Fatalf("breaker %s", s)
	}
}

// 429 with Retry-After in seconds and as an HTTP date: the publisher waits, then succeeds; the breaker stays closed.
func TestPublish429RetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		retryAfter func() string
		minWait    time.Duration
	}{
		{"seconds", func() string { return "1" }, time.Second},
		{"http date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, sim.Config{}, delivery.Config{Breaker: delivery.BreakerConfig{Failures: 1}})
			h.sim.SetFaults(sim.Faults{Script: []sim.Response{{Status: 429, RetryAfter: tc.retryAfter()}}})
			start := time.Now()
			out := h.pub.Publish(context.Background(), newEvent())
			mustAccept(t, out)
			if el := time.Since(start); el < tc.minWait-50*time.Millisecond {
				t.Fatalf("accepted after %v, want a wait of about %v", el, tc.minWait)
			}
			if out.Attempts != 2 {
				t.Fatalf("%d attempts, want 2", out.Attempts)
			}
			if s := h.pub.BreakerState(); s != gobreaker.StateClosed || h.states() != "" {
				t.Fatalf("breaker %s (transitions %q): a 429 is not a failure", s, h.states())
			}
		})
	}
}

// One 429 holds every publisher: nobody sends while the gate is closed.
func TestPublish429GateIsShared(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{})
	mustAccept(t, h.pub.Publish(context.Background(), newEvent())) // token in hand
	h.sim.SetFaults(sim.Faults{Script: []sim.Response{{Status: 429, RetryAfter: "1"}}})
	first := make(chan delivery.Outcome, 1)
	go func() { first <- h.pub.Publish(context.Background(), newEvent()) }()
	testutil.WaitFor(t, 10*time.Second, "the 429 closes the gate", func() bool { return h.pub.GateClosedUntil().After(time.Now()) })
	closedAt, until := time.Now(), h.pub.GateClosedUntil()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { mustAccept(t, h.pub.Publish(context.Background(), newEvent())) })
	}
	wg.Wait()
	mustAccept(t, await(t, first, 10*time.Second))
	if n := h.attemptsStarted(closedAt, until); n != 0 {
		t.Fatalf("%d requests reached CXone while the 429 gate was closed (until %v)", n, until.Sub(closedAt))
	}
	if n := h.sim.Stats().Accepted; n != 12 {
		t.Fatalf("accepted %d, want 12", n)
	}
}

// The gate holds those already waiting at the rate limit too: a publisher
// that passed the open gate and then waited for its turn at the limit must
// not send once a 429 has closed the gate meanwhile. Before, each such
// publisher sent into the closed gate, drew another 429 and lowered the
// limit again: after a long Retry-After the limit was down to nothing.
func TestPublish429GateHoldsThoseAtTheLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{RateLimit: 4}) // a turn every 250 ms: publishers queue at the limit
	mustAccept(t, h.pub.Publish(context.Background(), newEvent()))  // token in hand
	h.sim.SetFaults(sim.Faults{Script: []sim.Response{{Status: 429, RetryAfter: "2"}}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { mustAccept(t, h.pub.Publish(context.Background(), newEvent())) })
	}
	wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	var closedAt time.Time // the end of the attempt answered 429
	for _, a := range h.attempts[1:] {
		if closedAt.IsZero() || a[1].Before(closedAt) {
			closedAt = a[1]
		}
	}
	opens := closedAt.Add(2 * time.Second * 9 / 10) // Retry-After, less its jitter
	var during []time.Duration
	for _, a := range h.attempts[1:] {
		if a[0].After(closedAt) && a[0].Before(opens) {
			during = append(during, a[0].Sub(closedAt).Round(time.Millisecond))
		}
	}
	if len(during) > 0 {
		t.Fatalf("%d attempts sent while the 429 gate was closed (at %v after it closed), want none", len(during), during)
	}
	if n := h.sim.Stats().Accepted; n != 9 {
		t.Fatalf("accepted %d, want 9", n)
	}
}

// Two 503s then 200: accepted on the third attempt, the second wait longer than the first.
func TestPublish5xxThenSuccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{BackoffBase: 40 * time.Millisecond})
	h.sim.SetFaults(sim.Faults{Script: []sim.Response{{Status: 503}, {Status: 500}}})
	out := h.pub.Publish(context.Background(), newEvent())
	mustAccept(t, out)
	if out.Attempts != 3 {
		t.Fatalf("%d attempts, want 3", out.Attempts)
	}
	h.mu.Lock()
	at := h.attempts
	h.mu.Unlock()
	if len(at) != 3 {
		t.Fatalf("%d attempts observed", len(at))
	}
	// The waits between one attempt's end and the next one's start: backoff
	// 1 is in [40, 80) ms, backoff 2 in [80, 120) ms (plus scheduling).
	w1, w2 := at[1][0].Sub(at[0][1]), at[2][0].Sub(at[1][1])
	if w1 < 40*time.Millisecond || w2 < 80*time.Millisecond || w2 <= w1 {
		t.Fatalf("waits %v then %v: want growing waits from 40ms", w1, w2)
	}
}

// A record CXone fails (500) every time while it accepts the others meanwhile
// is at fault: retries_exhausted once its retries are spent. The other
// publishes are answered while its attempts are out: 8 publishers keep
// publishing, the simulator answers each after 0-20 ms.
func TestPublishPoisonAmongOthersExhausts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Faults: sim.Faults{FailCorrelationIDs: []string{"poison"},
		Latency: sim.Duration(time.Millisecond), LatencyJitter: sim.Duration(20 * time.Millisecond)}},
		delivery.Config{MaxRetries: 3, MaxBackoff: 100 * time.Millisecond}) // a short cap: the test waits less
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if out := h.pub.Publish(ctx, newEvent()); out.Result != delivery.Accepted && out.Result != delivery.Canceled {
					t.Errorf("healthy record: %s", out.Label())
				}
			}
		})
	}
	ev := newEvent()
	ev.CorrelationID = "poison"
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	defer pcancel()
	out := h.pub.Publish(pctx, ev)
	cancel()
	wg.Wait()
	if out.Reason != event.ReasonRetriesExhausted || out.Status != 500 || out.Attempts < 4 {
		t.Fatalf("outcome %s after %d attempts (status %d), want retries_exhausted after at least 4", out.Label(), out.Attempts, out.Status)
	}
	t.Logf("poison: %d attempts in %v", out.Attempts, out.LastAttempt.Sub(out.FirstAttempt))
	if n := h.sim.Stats().ByStatus[500]; n != int64(out.Attempts) {
		t.Fatalf("simulator answered 500 %d times, the outcome says %d attempts", n, out.Attempts)
	}
	if !out.LastAttempt.After(out.FirstAttempt) {
		t.Fatal("first/last attempt times")
	}
}

// 5xx to every publish: an outage, not the event's fault. The event waits
// however many attempts fail, and is accepted once CXone is back.
func TestPublish5xxForeverIsNotExhausted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Faults: sim.Faults{ForceStatus: 503}},
		delivery.Config{MaxRetries: 3, MaxBackoff: 50 * time.Millisecond, Breaker: delivery.BreakerConfig{Failures: 100}})
	done := make(chan delivery.Outcome, 1)
	go func() { done <- h.pub.Publish(context.Background(), newEvent()) }()
	deadline := time.Now().Add(30 * time.Second)
	for h.sim.Stats().ByStatus[503] < 10 { // 10 attempts: more than 3 retries
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts within 30 s", h.sim.Stats().ByStatus[503])
		}
		select {
		case out := <-done:
			t.Fatalf("outcome %s after %d attempts during an outage", out.Label(), out.Attempts)
		case <-time.After(5 * time.Millisecond):
		}
	}
	h.sim.SetFaults(sim.Faults{})
	out := await(t, done, 30*time.Second)
	mustAccept(t, out)
	if out.Attempts < 11 {
		t.Fatalf("%d attempts, want at least 11", out.Attempts)
	}
}

// The breaker opens after its threshold, holds everyone without spending
// attempts, half-opens after its timeout and closes on a good probe.
func TestPublishBreakerOpensAndRecovers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Faults: sim.Faults{ForceStatus: 503}},
		delivery.Config{MaxRetries: 2, Breaker: delivery.BreakerConfig{Failures: 3, OpenTimeout: time.Second}})
	done := make(chan delivery.Outcome, 1)
	go func() { done <- h.pub.Publish(context.Background(), newEvent()) }()
	testutil.WaitFor(t, 10*time.Second, "the breaker opens", func() bool { return h.pub.BreakerState() == gobreaker.StateOpen })
	if n := h.sim.Stats().Requests; n != 3 {
		t.Fatalf("%d requests before the breaker opened, want 3", n)
	}
	h.sim.SetFaults(sim.Faults{})
	out := await(t, done, 10*time.Second)
	mustAccept(t, out)
	if got := h.states(); !strings.HasPrefix(got, "open,") || !strings.HasSuffix(got, "half-open,closed") {
		t.Fatalf("transitions %q, want open … half-open,closed", got)
	}
	h.mu.Lock()
	opened, halfOpened := h.changedAt[0], h.changedAt[1]
	h.mu.Unlock()
	if n := h.attemptsStarted(opened, halfOpened); n != 0 {
		t.Fatalf("%d requests while the breaker was open", n)
	}
}

// A cancelled context ends every kind of wait at once, with nothing settled.
func TestPublishCancelStopsWaits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		faults sim.Faults
		cfg    delivery.Config
		// waiting tells that the publish is in (or about to enter) the wait.
		waiting func(h *harness) bool
	}{
		{"backoff", sim.Faults{ForceStatus: 503}, delivery.Config{BackoffBase: time.Hour, MaxBackoff: time.Hour, Breaker: delivery.BreakerConfig{Failures: 100}},
			func(h *harness) bool { return h.sim.Stats().ByStatus[503] > 0 }},
		{"429 gate", sim.Faults{Script: []sim.Response{{Status: 429, RetryAfter: "30"}}}, delivery.Config{},
			func(h *harness) bool { return h.pub.GateClosedUntil().After(time.Now()) }},
		{"open breaker", sim.Faults{ForceStatus: 503}, delivery.Config{Breaker: delivery.BreakerConfig{Failures: 1, OpenTimeout: time.Hour}},
			func(h *harness) bool { return h.pub.BreakerState() == gobreaker.StateOpen }},
		{"slow answer", sim.Faults{Latency: sim.Duration(time.Hour)}, delivery.Config{},
			func(h *harness) bool { return h.sim.Stats().Requests > 0 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, sim.Config{Faults: tc.faults}, tc.cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan delivery.Outcome, 1)
			go func() { done <- h.pub.Publish(ctx, newEvent()) }()
			// Each wait is an hour long: cancelling as soon as the publish
			// gets there proves that the cancel ends it.
			testutil.WaitFor(t, 10*time.Second, "the publish waits", func() bool { return tc.waiting(h) })
			cancel()
			select {
			case out := <-done:
				if out.Result != delivery.Canceled || out.Settled() {
					t.Fatalf("outcome %s after %d attempts, status %d, err %v", out.Label(), out.Attempts, out.Status, out.Err)
				}
			case <-time.After(time.Second):
				t.Fatal("Publish did not return within 1s of the cancel")
			}
		})
	}
}

// No secret and no token in any log line, at debug level, across outcomes.
func TestPublishLogsNoSecrets(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{MaxRetries: 1, Breaker: delivery.BreakerConfig{Failures: 100}})
	ctx := context.Background()
	mustAccept(t, h.pub.Publish(ctx, newEvent()))
	h.sim.RevokeTokens()
	mustAccept(t, h.pub.Publish(ctx, newEvent()))
	h.sim.SetFaults(sim.Faults{ForceStatus: 503})
	outage, cancel := context.WithTimeout(ctx, 300*time.Millisecond) // an outage: it waits until canceled
	h.pub.Publish(outage, newEvent())
	cancel()
	h.sim.SetFaults(sim.Faults{ForbidEventType: "custom.user.action"})
	h.pub.Publish(ctx, newEvent())
	token, err := h.tokens.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logs := h.logs.String()
	for _, secret := range []string{sim.DefaultClientSecret, token} {
		if strings.Contains(logs, secret) {
			t.Fatalf("log holds a secret %q:\n%s", secret[:4]+"…", logs)
		}
	}
	for _, want := range []string{`"correlation_id"`, `"trace_id"`, `"status_code":503`, `"attempts":2`, `"outcome":"forbidden"`, `"latency_ms"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// The client-side rate limit holds publishes to its rate; a 429 halves it
// and accepted publishes bring it back.
func TestPublishRateLimitAdapts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{}, delivery.Config{RateLimit: 40})
	ctx := context.Background()
	start := time.Now()
	for range 24 { // burst 4, then 20 at 40/s: about 0.5 s
		mustAccept(t, h.pub.Publish(ctx, newEvent()))
	}
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("24 publishes at 40/s took %v: the limit did not hold", el)
	}
	if r := h.pub.RateLimit(); r != 40 {
		t.Fatalf("rate %v before any 429", r)
	}
	h.sim.SetFaults(sim.Faults{Script: []sim.Response{{Status: 429, RetryAfter: "0"}}})
	mustAccept(t, h.pub.Publish(ctx, newEvent()))
	if r := h.pub.RateLimit(); r != 20 {
		t.Fatalf("rate %v after a 429, want 20", r)
	}
	waitUntil := time.Now().Add(5 * time.Second)
	for h.pub.RateLimit() <= 20 && time.Now().Before(waitUntil) {
		mustAccept(t, h.pub.Publish(ctx, newEvent()))
	}
	if r := h.pub.RateLimit(); r <= 20 {
		t.Fatalf("rate %v: it did not recover", r)
	}
}
