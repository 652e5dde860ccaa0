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
}

func newAdaptiveLimit(perSecond float64) *adaptiveLimit {
	return &adaptiveLimit{
		lim:     rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10))),
		ceiling: perSecond, floor: max(perSecond/20, 0.5), current: perSecond,
	}
}

func (a *adaptiveLimit) wait(ctx context.Context) error { return a.lim.Wait(ctx) }

// down halves the rate after a 429.
func (a *adaptiveLimit) down() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.current = max(a.current/2, a.floor)
	a.lastStep = time.Now()
	a.lim.SetLimit(rate.Limit(a.current))
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
	a.lim.SetLimit(rate.Limit(a.current))
}

func (a *adaptiveLimit) rate() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}
