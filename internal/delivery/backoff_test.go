package delivery

import (
	"context"
	"testing"
	"time"
)

// Waits double from the base, carry up to one base of jitter, and stop at the cap.
func TestBackoffGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	base, capd := 100*time.Millisecond, 2*time.Second
	for range 200 {
		for n := 1; n <= 8; n++ {
			d := Backoff(n, base, capd)
			lo := min(base<<(n-1), capd)
			hi := min(lo+base, capd)
			if d < lo || d > hi {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", n, d, lo, hi)
			}
		}
	}
	if d := Backoff(1000, time.Second, 30*time.Second); d != 30*time.Second {
		t.Fatalf("huge n: %v", d)
	}
}

// Jitter only lengthens, by at most the fraction.
func TestJitter(t *testing.T) {
	t.Parallel()
	for range 1000 {
		d := Jitter(time.Second, 0.1)
		if d < time.Second || d > 1100*time.Millisecond {
			t.Fatalf("Jitter = %v", d)
		}
	}
	if Jitter(0, 0.1) != 0 {
		t.Fatal("Jitter(0)")
	}
}

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
