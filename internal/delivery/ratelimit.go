package delivery

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/cxbridge/cxbridge/internal/retry"
)

// adaptiveLimit is the client-side rate limit. A 429 halves the rate; each
// second with accepted publishes raises it: by a tenth (configured), or by
// a tenth more for every second since the last 429 (discovered).
//
// Configured (--rate-limit): the rate starts at the configured one and
// stays between a twentieth of it and it.
//
// Discovered (no --rate-limit): there is no limit until CXone answers 429.
// Then the rate starts at half what CXone accepted in the last second and
// doubles every second (a slow start, as TCP's) until the next 429, after
// which it adapts as above, with no ceiling. Once it has climbed to four
// times the rate of that 429 without another one, CXone's limit is gone and
// so is ours. Without a limit, every 429 holds every publisher for
// Retry-After, and then they all go at once, only for the burst to be
// refused again: a tenth of CXone's rate.
type adaptiveLimit struct {
	lim      *rate.Limiter
	auto     bool // discovered, not configured
	ceiling  float64
	floor    float64
	mu       sync.Mutex
	engaged  atomic.Bool // a limit is in force (always, when configured); read without mu by wait
	slow     bool        // a discovered limit's slow start: doubling until a 429
	hit      float64     // the rate that drew the last 429
	current  float64
	lastStep time.Time
	lastDown time.Time // when the rate was last halved

	second            time.Time // start of the current one-second window
	inSecond, lastSec int       // publishes accepted in it, and in the one before
}

func newAdaptiveLimit(perSecond float64) *adaptiveLimit {
	a := &adaptiveLimit{
		lim:     rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10))),
		ceiling: perSecond, floor: max(perSecond/20, 0.5), current: perSecond,
	}
	a.engaged.Store(true)
	return a
}

// newDiscoveredLimit returns a limit that engages at the first 429.
func newDiscoveredLimit() *adaptiveLimit {
	return &adaptiveLimit{lim: rate.NewLimiter(rate.Inf, 1), auto: true, ceiling: math.Inf(1), floor: 0.5}
}

// maxReserve bounds how far ahead a waiter reserves its turn: a reservation
// keeps the rate of when it was made, so 256 publishers queued at a low
// rate would otherwise wait it out after the rate has risen.
const maxReserve = 200 * time.Millisecond

// wait returns when the limit allows one more attempt, or ctx's error.
// Without a limit in force it costs one atomic load: it runs before every
// publish attempt.
func (a *adaptiveLimit) wait(ctx context.Context) error {
	if !a.engaged.Load() {
		return ctx.Err()
	}
	for {
		r := a.lim.Reserve()
		d := r.Delay()
		if d <= maxReserve {
			return retry.Sleep(ctx, d)
		}
		r.Cancel()
		if err := retry.Sleep(ctx, retry.Jitter(maxReserve, 0.5)); err != nil {
			return err
		}
	}
}

// down halves the rate after a 429 to an attempt that started at sent. A
// 429 to an attempt sent before the last halving (or admitted by a
// reservation made before it) says nothing about the halved rate: the
// attempts in flight when CXone starts refusing would otherwise halve it
// once each, down to the floor at once.
func (a *adaptiveLimit) down(sent time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sent.Before(a.lastDown.Add(maxReserve)) { // admitted at the rate before
		return
	}
	if !a.engaged.Load() { // discovered: start from what CXone took
		a.engaged.Store(true)
		a.slow = true
		a.current = float64(max(a.lastSec, a.inSecond, 2))
	} else {
		a.slow = false
	}
	a.hit = a.current
	a.current = max(a.current/2, a.floor)
	a.lastStep = time.Now()
	a.lastDown = a.lastStep
	a.set()
}

// up counts an accepted publish and raises the rate, at most once a
// second; a discovered limit far above the rate of the last 429 is dropped.
func (a *adaptiveLimit) up() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if d := now.Sub(a.second); d >= time.Second {
		a.lastSec = a.inSecond
		if d >= 2*time.Second {
			a.lastSec = 0
		}
		a.inSecond, a.second = 0, now
	}
	a.inSecond++
	if !a.engaged.Load() || a.current >= a.ceiling || now.Sub(a.lastStep) < time.Second {
		return
	}
	if a.auto && !a.slow && a.current >= 4*a.hit {
		a.engaged.Store(false)
		a.lim.SetLimit(rate.Inf)
		return
	}
	step := 1.1
	switch {
	case a.slow:
		step = 2
	case a.auto: // faster the longer CXone has not refused
		step = min(1.1+0.1*now.Sub(a.lastDown).Seconds(), 2)
	}
	a.current = min(a.current*step+1, a.ceiling)
	a.lastStep = now
	a.set()
}

// set applies the current rate, with a burst of a tenth of it: a burst
// sized for the configured rate would, each time the 429 gate reopens,
// send at once what the lowered rate never allows. a.mu is held.
func (a *adaptiveLimit) set() {
	a.lim.SetLimit(rate.Limit(a.current))
	a.lim.SetBurst(max(1, int(a.current/10)))
}

// rate is the limit in force, 0 for none.
func (a *adaptiveLimit) rate() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.engaged.Load() {
		return 0
	}
	return a.current
}
