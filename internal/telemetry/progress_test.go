package telemetry

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The last-accepted gauge starts at the worker's start, moves with accepted
// records only, and never goes back when publishers settle out of order.
func TestProgressLastAccepted(t *testing.T) {
	reg := prometheus.NewRegistry()
	start := time.Unix(1_800_000_000, 0)
	p := NewProgress(reg, start)
	gauge := func() float64 {
		v, _ := Sum(reg, "cxbridge_last_accepted_timestamp_seconds", "")
		return v
	}
	if got := gauge(); got != 1_800_000_000 {
		t.Fatalf("at start: %v, want the start time 1800000000", got)
	}
	p.ObserveSettled("invalid_json", start.Add(time.Minute))
	p.ObserveSettled("rejected", start.Add(time.Minute))
	if got := gauge(); got != 1_800_000_000 {
		t.Fatalf("after dead letters only: %v, want the start time", got)
	}
	p.ObserveSettled("accepted", start.Add(90*time.Second+500*time.Millisecond))
	if got := gauge(); got != 1_800_000_090.5 {
		t.Fatalf("after an acceptance: %v, want 1800000090.5", got)
	}
	p.ObserveSettled("accepted", start.Add(10*time.Second)) // an older settle arriving late
	if got := gauge(); got != 1_800_000_090.5 {
		t.Fatalf("after an older acceptance: %v, want it unchanged", got)
	}

	// Concurrent settles: the newest wins.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { p.ObserveSettled("accepted", start.Add(time.Duration(100+i)*time.Second)) })
	}
	wg.Wait()
	if got, want := p.LastAccepted(), start.Add(149*time.Second); !got.Equal(want) {
		t.Fatalf("after concurrent settles: %v, want %v", got, want)
	}
}

// Settled passes every settle on to the wrapped hook and moves the gauge
// for acceptances only.
func TestProgressSettledHook(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	start := time.Now().Add(-time.Hour)
	p := NewProgress(reg, start)
	hook := p.Settled(m.ObserveSettled)
	hook("too_large", time.Now())
	if !p.LastAccepted().Equal(start) {
		t.Fatalf("a dead letter moved the last acceptance to %v", p.LastAccepted())
	}
	before := time.Now()
	hook("accepted", time.Now().Add(-time.Minute))
	if got := p.LastAccepted(); got.Before(before) || got.After(time.Now()) {
		t.Fatalf("last accepted %v, want the settle's time (after %v)", got, before)
	}
	if _, by := Sum(reg, "cxbridge_records_settled_total", "result"); by["accepted"] != 1 || by["too_large"] != 1 {
		t.Fatalf("the wrapped hook saw %v, want one accepted and one too_large", by)
	}
}
