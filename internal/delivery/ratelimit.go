package delivery

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// adaptiveLimit is the optional client-side rate limit. A 429 halves the
// rate (down to a twentieth of the configured one); each second with
// accepted publishes raises it by a tenth, back up to the configured rate.
type adaptiveLimit struct {
	lim      *rate.Limiter
	ceiling  float64
	floor    float64
	mu       sync.Mutex
	current  float64
	lastStep time.Time
	lastDown time.Time // when the rate was last halved
}

func newAdaptiveLimit(perSecond float64) *adaptiveLimit {
	return &adaptiveLimit{
		lim:     rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10))),
		ceiling: perSecond, floor: max(perSecond/20, 0.5), current: perSecond,
	}
}

func (a *adaptiveLimit) wait(ctx context.Context) error { return a.lim.Wait(ctx) }

// down halves the rate after a 429 to an attempt that started at sent. A
// 429 to an attempt sent before the last halving says nothing about the
// halved rate: the attempts in flight when CXone starts refusing would
// otherwise halve it once each, down to the floor at once.
func (a *adaptiveLimit) down(sent time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sent.Before(a.lastDown) {
		return
	}
	a.current = max(a.current/2, a.floor)
	a.lastStep = time.Now()
	a.lastDown = a.lastStep
	a.set()
}

// up raises the rate after an accepted publish, at most once a second.
func (a *adaptiveLimit) up() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.current >= a.ceiling || time.Since(a.lastStep) < time.Second {
		return
	}
	a.current = min(a.current*1.1+1, a.ceiling)
	a.lastStep = time.Now()
	a.set()
}

// set applies the current rate, with a burst of a tenth of it: a burst
// sized for the configured rate would, each time the 429 gate reopens,
// send at once what the lowered rate never allows. a.mu is held.
func (a *adaptiveLimit) set() {
	a.lim.SetLimit(rate.Limit(a.current))
	a.lim.SetBurst(max(1, int(a.current/10)))
}

func (a *adaptiveLimit) rate() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}
