package delivery

import (
	"context"
	"testing"
	"time"
)

// The gate holds every caller until it opens; a cancelled caller leaves at once.
func TestGate(t *testing.T) {
	t.Parallel()
	var g Gate
	if w, err := g.Wait(context.Background()); w != 0 || err != nil {
		t.Fatalf("open gate: %v %v", w, err)
	}
	g.Close(time.Now().Add(50 * time.Millisecond))
	g.Close(time.Now().Add(10 * time.Millisecond)) // an earlier time never shortens it
	start := time.Now()
	if _, err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 45*time.Millisecond {
		t.Fatalf("waited %v, want ≥ 50ms", el)
	}
	g.Close(time.Now().Add(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := g.Wait(ctx); err == nil || time.Since(start) > time.Second {
		t.Fatalf("cancelled wait: %v after %v", err, time.Since(start))
	}
}
