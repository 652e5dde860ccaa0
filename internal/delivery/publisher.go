// Package delivery turns one valid event into a settled outcome at CXone:
// it applies the outcome policy of the design (retry with backoff and
// jitter, the shared 429 gate, the circuit breaker around each single
// attempt, token invalidation on 401, an optional client-side rate limit)
// and reports an Outcome that says whether the event was accepted, must go
// to the DLQ (and why), or was interrupted.
//
// It never dead-letters because CXone is down, whatever the traffic: while
// the breaker is open, the gate is closed or tokens cannot be had, Publish
// waits without spending the retry budget; and a failed attempt (server
// error, redirect, timeout, network error) spends it only when CXone
// demonstrably answered other publishes normally (a 2xx, or a verdict on
// their event: a 4xx other than 401 and 429) while that attempt was out —
// one sent after it and answered before its failure came back, or one on
// each side of it within a second (see evidence). Attempts are numbered as
// they are sent, so neither the start nor the end of an outage passes for
// such evidence. A 429 never spends, nor does a 401 (even with a fresh
// token, which counts as a breaker failure). A publish whose connection
// broke under it (cxone.Result.ConnLost) is sent again at once on a new
// connection, counting nothing — for the breaker, the backoff or the
// budget; a second loss in a row is a network error like any other. The
// request may have reached CXone, so this may deliver the event twice
// (delivery is at least once; the correlation id is the same).
//
// The trade-off: a record that fails while nothing else is answered (alone
// on a quiet topic, say) cannot be told from an outage. It is retried with
// backoff (up to MaxBackoff) for as long as it takes, holding its key or
// partition, until CXone accepts it or answers other publishes normally
// around one of its attempts; only then is it dead-lettered. It does not
// know about Kafka.
package delivery

import (
	"context"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/tracing"
)

// Config configures a Publisher. Zero values take the defaults.
type Config struct {
	// MaxRetries is how many failed attempts (server error, redirect,
	// timeout, network error) an event may have, past its first, before it
	// is dead-lettered — counting only those that failed while CXone
	// answered other publishes normally, so that an outage spends none. 0
	// means none (the settings' default is 3).
	MaxRetries int
	// BackoffBase is the first retry's wait (doubling after). Default 1s.
	BackoffBase time.Duration
	// MaxBackoff caps every wait, Retry-After included. Default 30s.
	MaxBackoff time.Duration
	// DefaultRetryAfter is the wait after a 429 without Retry-After. Default 2s.
	DefaultRetryAfter time.Duration
	// Breaker configures the circuit breaker.
	Breaker BreakerConfig
	// RateLimit is the most attempts per second of the whole consumer
	// group: this publisher allows its share of it (SetShare; all of it
	// until told). A 429 halves it for a while, it then recovers by a
	// tenth a second. 0: no limit until CXone answers 429, then one found
	// from CXone's answers (see adaptiveLimit).
	RateLimit float64
	// Hooks observe what happens, for metrics. Optional.
	Hooks Hooks
	// Logger gets one line per final outcome. Optional.
	Logger *slog.Logger
	// TracerProvider makes the span of each attempt. Optional: the one
	// tracing.Setup installed, if it did (see tracing.Tracer).
	TracerProvider trace.TracerProvider
}

// BreakerConfig configures the circuit breaker around single attempts.
type BreakerConfig struct {
	// Failures is the number of consecutive failed attempts that opens it. Default 5.
	Failures uint32
	// OpenTimeout is how long it stays open, on average, before letting
	// probes through: each opening lasts OpenTimeout × a factor drawn
	// uniformly from [0.5, 1.5) (see openPeriod), so that probes cannot
	// keep in step with a periodic fault. Default 5s.
	OpenTimeout time.Duration
	// HalfOpenProbes is how many probes must succeed to close it. Default 1.
	HalfOpenProbes uint32
}

// Hooks are optional observers; nil fields are skipped. They must be fast.
// BreakerState gets each change of the state Publisher.BreakerState
// reports, in order (open → half-open when the jittered open period ends),
// under the breaker's locks: it must not call the Publisher.
//
// Retry gets each retry after a counted failure (server error, redirect,
// timeout, network error); Resend each retry at once of a publish whose
// connection broke under it (see cxone.Result.ConnLost), which is not a
// Retry.
type Hooks struct {
	Attempt      func(class cxone.Class, d time.Duration)
	Retry        func()
	Resend       func()
	GateWait     func(d time.Duration)
	BreakerState func(from, to gobreaker.State)
}

func (c *Config) setDefaults() {
	// A zero setting takes the shipped default (config's, the flags').
	d := config.DefaultCXone()
	c.MaxRetries = max(c.MaxRetries, 0)
	if c.BackoffBase <= 0 {
		c.BackoffBase = d.RetryBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.DefaultRetryAfter <= 0 {
		c.DefaultRetryAfter = 2 * time.Second // no flag: a 429 without Retry-After
	}
	if c.Breaker.Failures == 0 {
		c.Breaker.Failures = uint32(d.BreakerFailures)
	}
	if c.Breaker.OpenTimeout <= 0 {
		c.Breaker.OpenTimeout = d.BreakerOpenTimeout
	}
	if c.Breaker.HalfOpenProbes == 0 {
		c.Breaker.HalfOpenProbes = uint32(d.BreakerProbes)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Sender makes one publish attempt. *cxone.Client is one.
type Sender interface {
	Attempt(ctx context.Context, token string, ev *event.Event, body []byte) cxone.Result
}

// TokenSource is the token cache. *cxone.Tokens is one.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
	NextTry() time.Time
}

var (
	_ Sender      = (*cxone.Client)(nil)
	_ TokenSource = (*cxone.Tokens)(nil)
)

// Publisher publishes events with the outcome policy. It is safe for
// concurrent use; its breaker, gate and limiter are shared by all callers.
type Publisher struct {
	cfg      Config
	send     Sender
	tokens   TokenSource
	breaker  *breaker
	gate     Gate
	limiter  *adaptiveLimit // configured or discovered
	evidence *evidence      // what CXone answered others, for the retry budget
	tracer   tracing.Tracer
}

// New returns a Publisher sending with send and authenticating with tokens.
func New(cfg Config, send Sender, tokens TokenSource) *Publisher {
	cfg.setDefaults()
	p := &Publisher{cfg: cfg, send: send, tokens: tokens, evidence: newEvidence(), tracer: tracing.NewTracer(cfg.TracerProvider)}
	// poll bounds a wait while the breaker refuses an attempt with no open
	// period left (its probes are out): a change of state ends it sooner.
	poll := min(max(cfg.Breaker.OpenTimeout/20, 5*time.Millisecond), 250*time.Millisecond)
	p.breaker = newBreaker(cfg.Breaker, poll, func(from, to gobreaker.State) {
		cfg.Logger.Warn("circuit breaker state changed", "from", from.String(), "to", to.String())
		if cfg.Hooks.BreakerState != nil {
			cfg.Hooks.BreakerState(from, to)
		}
	})
	if cfg.RateLimit > 0 {
		p.limiter = newAdaptiveLimit(cfg.RateLimit)
	} else {
		p.limiter = newDiscoveredLimit()
	}
	return p
}

// BreakerState returns the breaker's state: open until its open period
// ends (jittered, see BreakerConfig.OpenTimeout), then half-open until a
// probe closes or reopens it.
func (p *Publisher) BreakerState() gobreaker.State { return p.breaker.State() }

// RateLimit returns the client-side rate limit in force (it adapts to
// 429s), 0 when there is none.
func (p *Publisher) RateLimit() float64 { return p.limiter.rate() }

// SetShare tells the publisher its share of the consumer group's work: the
// partitions it holds ÷ the partitions of the input topic, in [0, 1]. With
// a configured RateLimit (the group's) its limit becomes that share of it;
// a limit found from 429s is scaled by the change of share. Call it at
// every rebalance.
func (p *Publisher) SetShare(share float64) { p.limiter.setShare(share) }

// Balance moves a limit found from 429s towards this publisher's fair
// part of the consumer group's: part is its share of the group's backlog,
// got its share of what the group settled lately (both read from the
// group's offsets). It does nothing to a configured limit, nor before a
// 429. Call it every few seconds while there is a backlog.
func (p *Publisher) Balance(part, got float64) { p.limiter.balance(part, got) }

// GateClosedUntil returns when the 429 gate opens; a past time means open.
func (p *Publisher) GateClosedUntil() time.Time { return p.gate.ClosedUntil() }
