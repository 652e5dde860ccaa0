package delivery

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Each time the breaker opens it stays open for OpenTimeout × a factor
// drawn uniformly from [openFactorMin, openFactorMax): from half of
// OpenTimeout to one and a half times it, OpenTimeout on average, never
// less than half of it (the floor). A fixed open period phase-locks with a
// periodic fault: with CXone down 5 s and up 5 s and a fixed 10 s, every
// probe landed in a down phase and nothing was published for a minute
// although CXone was up half of it. The range is OpenTimeout wide, so the
// probes of a fault whose period is at most OpenTimeout fall at every phase
// of it, and drawn anew at each opening, they cannot stay in step with a
// longer one either.
const (
	openFactorMin = 0.5
	openFactorMax = 1.5
)

// openPeriod draws how long the breaker stays open this time.
func openPeriod(timeout time.Duration) time.Duration {
	f := openFactorMin + (openFactorMax-openFactorMin)*rand.Float64()
	return time.Duration(min(f*float64(timeout), math.MaxInt64/2)) // no overflow for absurd settings
}

// openFloor is the shortest open period.
func openFloor(timeout time.Duration) time.Duration {
	return time.Duration(openFactorMin * float64(timeout))
}

// breaker is the circuit breaker around single attempts: gobreaker's
// two-step breaker, with its open period jittered. gobreaker opens for a
// fixed Timeout, so that is set to the floor of the range, and breaker
// keeps its own "no probe before" time, drawn at each opening (the open
// period's end): until then it admits nothing, even once gobreaker has gone
// half-open, and it reports itself open. Every change of the state it
// reports goes to onChange, in order, and wakes the callers waiting for it
// (a closing lets them all go at once, not at their next poll).
//
// Lock order: gobreaker's lock, then mu (gobreaker calls OnStateChange
// under its lock); mu is never held while calling gobreaker.
type breaker struct {
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	timeout  time.Duration // the configured OpenTimeout: the mean open period
	poll     time.Duration // how long to wait, at most, when gobreaker refuses
	onChange func(from, to gobreaker.State)

	mu        sync.Mutex
	notBefore time.Time       // no attempt before this: when the current open period ends
	state     gobreaker.State // the state reported
	changed   chan struct{}   // closed, and replaced, when state changes
}

// The breaker's view of an attempt.
var (
	errAttemptFailed   = errors.New("attempt failed")   // counts as a failure
	errAttemptExcluded = errors.New("attempt excluded") // counts as nothing
)

func newBreaker(cfg BreakerConfig, poll time.Duration, onChange func(from, to gobreaker.State)) *breaker {
	b := &breaker{timeout: cfg.OpenTimeout, poll: poll, onChange: onChange, changed: make(chan struct{})}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          "cxone",
		MaxRequests:   cfg.HalfOpenProbes,
		Timeout:       openFloor(cfg.OpenTimeout),
		ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
		IsExcluded:    func(err error) bool { return errors.Is(err, errAttemptExcluded) },
		OnStateChange: func(_ string, _, to gobreaker.State) { b.gobreakerChanged(to) },
	})
	return b
}

// gobreakerChanged follows gobreaker's state (under gobreaker's lock). An
// opening draws the open period; gobreaker going half-open at the floor is
// not reported before the period ends.
func (b *breaker) gobreakerChanged(to gobreaker.State) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if to == gobreaker.StateOpen {
		b.notBefore = now.Add(openPeriod(b.timeout))
	}
	if to == gobreaker.StateHalfOpen && now.Before(b.notBefore) {
		return // open for us until notBefore; see observe
	}
	b.set(to)
}

// observe reports the end of an open period once gobreaker is half-open (s
// is its state, read before mu was taken) and notBefore has passed. With mu
// held.
func (b *breaker) observe(s gobreaker.State, now time.Time) {
	if b.state == gobreaker.StateOpen && s == gobreaker.StateHalfOpen && !now.Before(b.notBefore) {
		b.set(gobreaker.StateHalfOpen)
	}
}

// set reports a change of state. With mu held.
func (b *breaker) set(to gobreaker.State) {
	if to == b.state {
		return
	}
	from := b.state
	b.state = to
	close(b.changed)
	b.changed = make(chan struct{})
	if b.onChange != nil {
		b.onChange(from, to)
	}
}

// State returns the breaker's state: open until the open period ends, then
// half-open until the probes close it or open it again.
func (b *breaker) State() gobreaker.State {
	s := b.cb.State() // moves gobreaker from open to half-open once due
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.observe(s, now)
	return b.state
}

// allow admits one attempt: done takes its result (nil, errAttemptFailed
// or errAttemptExcluded) and probe tells whether it is a half-open probe.
// When it admits none, done is nil: the caller waits for wait, or until
// changed is closed, and asks again.
func (b *breaker) allow() (done func(error), probe bool, wait time.Duration, changed <-chan struct{}) {
	_, wait, changed = b.held()
	if wait > 0 {
		return nil, false, wait, changed
	}
	done, err := b.cb.Allow()
	if err != nil { // open at the very end of its period, or half-open with its probes out
		return nil, false, b.poll, changed // changed: a change since held wakes the caller
	}
	// Admitted, unless the breaker opened again meanwhile (others' failures,
	// a failed probe): then the attempt waits for the new open period to end.
	s, wait, changed := b.held()
	if wait > 0 {
		done(errAttemptExcluded) // gives back a half-open probe slot
		return nil, false, wait, changed
	}
	return done, s == gobreaker.StateHalfOpen, 0, nil
}

// held returns gobreaker's state, how long the current open period has
// left (0 when none) and the channel closed at the next change of state.
func (b *breaker) held() (gobreaker.State, time.Duration, <-chan struct{}) {
	s := b.cb.State() // moves gobreaker from open to half-open once due
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.observe(s, now)
	return s, max(b.notBefore.Sub(now), 0), b.changed
}
