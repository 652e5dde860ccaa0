package delivery_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/retry"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil/simcx"
)

// resettingServer serves h over real TCP and can reset every connection
// it holds at once (RST, as a load balancer recycling its connections or
// a NAT forgetting them does): the requests on them fail with "connection
// reset by peer", or EOF, at the client.
type resettingServer struct {
	*httptest.Server
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newResettingServer(t *testing.T, h http.Handler) *resettingServer {
	t.Helper()
	s := &resettingServer{Server: httptest.NewUnstartedServer(h), conns: map[net.Conn]struct{}{}}
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch st {
		case http.StateNew:
			s.conns[c] = struct{}{}
		case http.StateClosed, http.StateHijacked:
			delete(s.conns, c)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// resetAll resets every connection and returns how many there were.
func (s *resettingServer) resetAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.conns)
	for c := range s.conns {
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	clear(s.conns)
	return n
}

// attemptLog is the real client, noting each attempt of each event: when
// it started and ended, its class and whether its connection was lost.
type attemptLog struct {
	delivery.Sender
	mu   sync.Mutex
	byID map[string][]loggedAttempt
}

type loggedAttempt struct {
	start, end time.Time
	class      cxone.Class
	lost       bool
}

func newAttemptLog(s delivery.Sender) *attemptLog {
	return &attemptLog{Sender: s, byID: map[string][]loggedAttempt{}}
}

func (l *attemptLog) Attempt(ctx context.Context, token string, ev *event.Event, body []byte) cxone.Result {
	start := time.Now()
	res := l.Sender.Attempt(ctx, token, ev, body)
	l.mu.Lock()
	l.byID[ev.CorrelationID] = append(l.byID[ev.CorrelationID], loggedAttempt{start, time.Now(), res.Class, res.ConnLost})
	l.mu.Unlock()
	return res
}

func (l *attemptLog) attempts(id string) []loggedAttempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loggedAttempt(nil), l.byID[id]...)
}

// immediate bounds the gap before a retry "at once": far below the shipped
// first backoff (1 s and up), far above what scheduling costs.
const immediate = 500 * time.Millisecond

// checkLostRetriedAtOnce fails the test unless each attempt of id that lost
// its connection, and was not itself the retry at once of a lost one, was
// followed at once by another attempt.
func checkLostRetriedAtOnce(t *testing.T, log *attemptLog, id string) {
	t.Helper()
	as := log.attempts(id)
	for i, a := range as {
		if !a.lost || (i > 0 && as[i-1].lost && as[i].start.Sub(as[i-1].end) < immediate) || i+1 == len(as) {
			continue
		}
		if gap := as[i+1].start.Sub(a.end); gap >= immediate {
			t.Errorf("%s: attempt %d lost its connection and the next came %v later, not at once", id, i+1, gap)
		}
	}
}

// Connection resets are ridden through at the shipped defaults: CXone is
// served over real TCP and resets every connection it holds at once, 8
// times 400 ms apart, while 64 publishers keep ~64 publishes in flight
// (each reset fails dozens at once); yet the breaker never opens, a
// publish whose connection was lost is sent again at once (not after the
// 1 s backoff), and every event is accepted. Before, each reset's burst of
// failures counted as consecutive breaker failures: the breaker opened at
// the first reset (2.5–7.5 s with nothing sent), and every event hit
// waited a backoff. A retry at once through the connection pool was not
// enough either: it often met another connection of the same reset and
// was lost again, which opened the breaker as well.
func TestConnectionResetsRiddenThroughAtDefaults(t *testing.T) {
	s := sim.New(sim.Config{Faults: sim.Faults{Latency: sim.Duration(10 * time.Millisecond), LatencyJitter: sim.Duration(10 * time.Millisecond)}})
	srv := newResettingServer(t, s.Handler())
	hc := cxone.NewHTTPClient(cxone.TransportConfig{})
	t.Cleanup(hc.CloseIdleConnections)
	tokens := simcx.Tokens(t, hc, srv.URL, cxone.TokensConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := tokens.Token(ctx); err != nil { // the token is had before the resets begin
		t.Fatal(err)
	}

	cfg := shippedConfig(t)
	var mu sync.Mutex
	var transitions []string
	cfg.Hooks.BreakerState = func(_, to gobreaker.State) {
		mu.Lock()
		transitions = append(transitions, to.String())
		mu.Unlock()
	}
	log := newAttemptLog(cxone.NewClient(hc, srv.URL, 10*time.Second))
	pub := delivery.New(cfg, log, tokens)

	const resets, publishers = 8, 64
	var resetsDone atomic.Bool
	var connsReset atomic.Int64
	go func() {
		defer resetsDone.Store(true)
		for range resets {
			if retry.Sleep(ctx, 400*time.Millisecond) != nil {
				return
			}
			connsReset.Add(int64(srv.resetAll()))
		}
	}()
	var wg sync.WaitGroup
	var published atomic.Int64
	ids := make([][]string, publishers)
	for p := range publishers {
		wg.Go(func() {
			for n := 0; !resetsDone.Load() || n < 10; n++ {
				ev := newEvent()
				ids[p] = append(ids[p], ev.CorrelationID)
				if out := pub.Publish(ctx, ev); out.Result != delivery.Accepted {
					t.Errorf("%s: %s after %d attempts (%v)", ev.CorrelationID, out.Label(), out.Attempts, out.Err)
					return
				}
				published.Add(1)
			}
		})
	}
	wg.Wait()

	lost, retriedLost := 0, 0
	for _, pids := range ids {
		for _, id := range pids {
			as := log.attempts(id)
			for i, a := range as {
				if a.lost {
					lost++
					if i+1 < len(as) {
						retriedLost++
					}
				}
			}
			checkLostRetriedAtOnce(t, log, id)
		}
	}
	st := s.Stats()
	t.Logf("%d events published, %d connections reset, %d attempts lost their connection; CXone accepted %d distinct events, %d again",
		published.Load(), connsReset.Load(), lost, st.Distinct, st.Duplicates)
	if lost < resets {
		t.Fatalf("only %d attempts lost their connection in %d resets: the fault did not hit", lost, resets)
	}
	if st.Distinct != published.Load() {
		t.Errorf("CXone accepted %d distinct events of %d published", st.Distinct, published.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(transitions) > 0 {
		t.Errorf("the breaker changed state %d times (%v): connection resets are not an outage of CXone", len(transitions), transitions)
	}
}

// A connection lost twice in a row counts: a CXone (or a load balancer in
// front of it) that resets every publish is an outage. At the shipped
// defaults, 5 events published at once against it: each is sent, loses
// its connection, is sent again at once (the retry at once is not
// counted), loses it again — that one counts — and then waits its backoff;
// the 5 counted failures open the breaker. Nothing is dead-lettered.
func TestConnectionLostTwiceCounts(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		requests.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	hc := cxone.NewHTTPClient(cxone.TransportConfig{})
	t.Cleanup(hc.CloseIdleConnections)

	cfg := shippedConfig(t)
	opened := make(chan struct{})
	var once sync.Once
	cfg.Hooks.BreakerState = func(_, to gobreaker.State) {
		if to == gobreaker.StateOpen {
			once.Do(func() { close(opened) })
		}
	}
	log := newAttemptLog(cxone.NewClient(hc, srv.URL, 10*time.Second))
	pub := delivery.New(cfg, log, staticTokens{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const events = 5
	outs := make([]delivery.Outcome, events)
	evs := make([]*event.Event, events)
	var wg sync.WaitGroup
	for i := range events {
		evs[i] = newEvent()
		wg.Go(func() { outs[i] = pub.Publish(ctx, evs[i]) })
	}
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatal("the breaker did not open while every publish lost its connection")
	}
	cancel()
	wg.Wait()
	for i, out := range outs {
		id := evs[i].CorrelationID
		if out.Result != delivery.Canceled {
			t.Errorf("%s: %s, want canceled (an outage is never a dead letter)", id, out.Label())
		}
		as := log.attempts(id)
		if len(as) != 2 || !as[0].lost || !as[1].lost {
			t.Errorf("%s: %d attempts (lost: %v), want 2, both lost (the first retried at once, the second counted)", id, len(as), lostOf(as))
			continue
		}
		if gap := as[1].start.Sub(as[0].end); gap >= immediate {
			t.Errorf("%s: retried %v after the lost connection, not at once", id, gap)
		}
	}
	if n := requests.Load(); n != 2*events {
		t.Errorf("CXone saw %d requests, want %d", n, 2*events)
	}
}

func lostOf(as []loggedAttempt) []bool {
	var l []bool
	for _, a := range as {
		l = append(l, a.lost)
	}
	return l
}
