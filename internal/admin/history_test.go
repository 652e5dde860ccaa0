package admin

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var t0 = time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)

func ms(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

// The ring keeps the last points+1 samples: older ones are overwritten in
// place (its memory stays what it was when made), and the points come out
// oldest first across the wrap.
func TestHistoryRingWrapsAndStaysBounded(t *testing.T) {
	h := NewHistory(5*time.Second, 4, nil)
	for i := range 11 { // samples at 0 s … 50 s; accepted grows by 10 a sample
		h.Add(t0.Add(time.Duration(i)*5*time.Second), Sample{Accepted: float64(10 * i), Lag: float64(i), InFlight: float64(100 + i)})
		if len(h.ring) > 5 || cap(h.ring) != 5 {
			t.Fatalf("after %d samples the ring holds %d (cap %d), want at most 5 (cap 5)", i+1, len(h.ring), cap(h.ring))
		}
		if got := len(h.Data().TimeMS); got != min(i, 4) {
			t.Fatalf("after %d samples: %d points, want %d", i+1, got, min(i, 4))
		}
	}
	d := h.Data()
	want := HistoryData{
		StepSeconds: 5, WindowSeconds: 20, StartMS: ms(30 * time.Second),
		TimeMS:            []int64{ms(35 * time.Second), ms(40 * time.Second), ms(45 * time.Second), ms(50 * time.Second)},
		AcceptedPerSecond: []float64{2, 2, 2, 2}, DeadLettersPerSecond: []float64{0, 0, 0, 0},
		Lag: []float64{7, 8, 9, 10}, InFlight: []float64{107, 108, 109, 110},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got  %+v\nwant %+v", d, want)
	}
}

// A counter that goes down was reset in between (its source started
// again): the interval's increase is its new value, never a negative rate.
// Rates divide by the time that passed, not by the nominal step.
func TestHistoryRatesFromCounters(t *testing.T) {
	h := NewHistory(5*time.Second, 10, nil)
	for _, s := range []struct {
		at            time.Duration
		accepted, dlq float64
	}{
		{0, 100, 7},
		{5 * time.Second, 150, 7},  // +50 in 5 s: 10/s; no dead letters
		{10 * time.Second, 20, 2},  // reset: at least 20 and 2 since
		{15 * time.Second, 45, 12}, // +25, +10
		{30 * time.Second, 75, 12}, // a late sample: +30 in 15 s
		{30 * time.Second, 80, 12}, // no time passed: no interval, no point
	} {
		h.Add(t0.Add(s.at), Sample{Accepted: s.accepted, DeadLetters: s.dlq})
	}
	d := h.Data()
	if want := []float64{10, 4, 5, 2}; !reflect.DeepEqual(d.AcceptedPerSecond, want) {
		t.Errorf("accepted/s %v, want %v", d.AcceptedPerSecond, want)
	}
	if want := []float64{0, 0.4, 2, 0}; !reflect.DeepEqual(d.DeadLettersPerSecond, want) {
		t.Errorf("dead letters/s %v, want %v", d.DeadLettersPerSecond, want)
	}
	if want := []int64{ms(5 * time.Second), ms(10 * time.Second), ms(15 * time.Second), ms(30 * time.Second)}; !reflect.DeepEqual(d.TimeMS, want) || d.StartMS != ms(0) {
		t.Errorf("times %v from %d, want %v from %d", d.TimeMS, d.StartMS, want, ms(0))
	}
}

// Adding and reading at once is safe (run with -race), and what is read is
// always whole: every series has one value per point.
func TestHistoryConcurrentUse(t *testing.T) {
	h := NewHistory(time.Second, 50, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				h.Add(t0.Add(time.Duration(g*1000+i)*time.Millisecond), Sample{Accepted: float64(i)})
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 500 {
				d := h.Data()
				if n := len(d.TimeMS); n > 50 || len(d.AcceptedPerSecond) != n || len(d.DeadLettersPerSecond) != n || len(d.Lag) != n || len(d.InFlight) != n {
					t.Errorf("uneven or oversized data: %d times, %d/%d/%d/%d values", n, len(d.AcceptedPerSecond), len(d.DeadLettersPerSecond), len(d.Lag), len(d.InFlight))
					return
				}
			}
		})
	}
	wg.Wait()
	if len(h.ring) != 51 {
		t.Fatalf("the ring holds %d samples, want 51", len(h.ring))
	}
}

// GET /history.json on the admin handler, the way the worker mounts it:
// the shape the page reads, empty lists (not null) before two samples.
func TestHistoryEndpoint(t *testing.T) {
	h := NewStatusHistory(nil)
	s := New(prometheus.NewRegistry(), 0)
	s.Handle("GET /history.json", h)
	srv := httptest.NewServer(s)
	defer srv.Close()

	resp, body := get(t, srv.URL+"/history.json")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, %q, %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	want := `{"step_seconds":5,"window_seconds":600,"start_ms":0,"time_ms":[],"accepted_per_second":[],"dead_letters_per_second":[],"lag":[],"in_flight":[]}`
	if strings.TrimSpace(body) != want {
		t.Fatalf("empty history:\n got %s\nwant %s", body, want)
	}

	h.Add(t0, Sample{Accepted: 10, DeadLetters: 1, Lag: 40, InFlight: 3})
	h.Add(t0.Add(5*time.Second), Sample{Accepted: 35, DeadLetters: 2, Lag: 12, InFlight: 9})
	_, body = get(t, srv.URL+"/history.json")
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	wantJSON := map[string]any{
		"step_seconds": 5.0, "window_seconds": 600.0, "start_ms": float64(ms(0)), "time_ms": []any{float64(ms(5 * time.Second))},
		"accepted_per_second": []any{5.0}, "dead_letters_per_second": []any{0.2}, "lag": []any{12.0}, "in_flight": []any{9.0},
	}
	if !reflect.DeepEqual(got, wantJSON) {
		t.Fatalf("got  %v\nwant %v", got, wantJSON)
	}
	if resp, _ := get(t, srv.URL+"/history.json?x=1"); resp.StatusCode != 200 {
		t.Fatalf("with a query: %d", resp.StatusCode)
	}
}

// The sampler at the shipped step and window, in a bubble: a sample at
// once, then one every 5 s; after 12 minutes exactly the last 10 minutes
// are kept (120 points, 5 s apart, ending now); it stops with its context
// (synctest.Test fails if a goroutine of the bubble is left blocked).
func TestHistorySampler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reads atomic.Int64
		h := NewStatusHistory(func() Sample {
			n := reads.Add(1)
			return Sample{Accepted: float64(50 * n), DeadLetters: float64(n / 2), Lag: float64(n), InFlight: 7}
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { h.Run(ctx); close(done) }()
		synctest.Wait()
		if n := reads.Load(); n != 1 {
			t.Fatalf("%d samples at the start, want 1", n)
		}
		if d := h.Data(); len(d.TimeMS) != 0 {
			t.Fatalf("points before the first step: %v", d.TimeMS)
		}

		time.Sleep(HistoryEvery)
		synctest.Wait()
		d := h.Data()
		if reads.Load() != 2 || !reflect.DeepEqual(d.TimeMS, []int64{time.Now().UnixMilli()}) || !reflect.DeepEqual(d.AcceptedPerSecond, []float64{10}) {
			t.Fatalf("after one step: %d reads, %+v", reads.Load(), d)
		}

		time.Sleep(12 * time.Minute)
		synctest.Wait()
		d = h.Data()
		if len(d.TimeMS) != 120 {
			t.Fatalf("%d points after 12 min, want 120", len(d.TimeMS))
		}
		now := time.Now().UnixMilli()
		if d.TimeMS[119] != now || d.TimeMS[0] != now-int64((HistoryWindow-HistoryEvery)/time.Millisecond) || d.StartMS != now-int64(HistoryWindow/time.Millisecond) {
			t.Fatalf("points from %d to %d, want from %d to now (%d)", d.TimeMS[0], d.TimeMS[119], now-595000, now)
		}
		for i := range d.TimeMS {
			if i > 0 && d.TimeMS[i]-d.TimeMS[i-1] != 5000 {
				t.Fatalf("points %d and %d are %d ms apart", i-1, i, d.TimeMS[i]-d.TimeMS[i-1])
			}
			if d.AcceptedPerSecond[i] != 10 || d.InFlight[i] != 7 {
				t.Fatalf("point %d: %v/s accepted, %v in flight; want 10 and 7", i, d.AcceptedPerSecond[i], d.InFlight[i])
			}
		}
		if last := reads.Load(); d.Lag[119] != float64(last) {
			t.Fatalf("last lag %v, want the last read's %d", d.Lag[119], last)
		}

		cancel()
		<-done
		n := reads.Load()
		time.Sleep(time.Minute)
		if reads.Load() != n {
			t.Fatal("sampled after its context ended")
		}
	})
}
