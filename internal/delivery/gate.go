package delivery

import (
	"context"
	"sync"
	"time"

	"github.com/cxbridge/cxbridge/internal/retry"
)

// Gate is the one 429 gate that every publisher waits at: a 429 closes it
// until its Retry-After has passed, and nobody attempts meanwhile.
type Gate struct {
	mu    sync.Mutex
	until time.Time
}

// Close keeps the gate shut until t (or later, if it already is).
func (g *Gate) Close(t time.Time) {
	g.mu.Lock()
	if t.After(g.until) {
		g.until = t
	}
	g.mu.Unlock()
}

// ClosedUntil returns when the gate opens; the zero time or a past time
// means it is open.
func (g *Gate) ClosedUntil() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.until
}

// Wait returns once the gate is open, or ctx's error when ctx ends first.
// It reports how long it waited.
func (g *Gate) Wait(ctx context.Context) (time.Duration, error) {
	var waited time.Duration
	for {
		g.mu.Lock()
		d := time.Until(g.until)
		g.mu.Unlock()
		if d <= 0 {
			return waited, ctx.Err()
		}
		start := time.Now()
		err := retry.Sleep(ctx, d)
		waited += time.Since(start)
		if err != nil {
			return waited, err
		}
	}
}
