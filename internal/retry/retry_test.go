package retry

import (
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
