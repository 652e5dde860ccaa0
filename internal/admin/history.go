package admin

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// The status page's charts: one sample every HistoryEvery, the last
// HistoryWindow of them.
const (
	HistoryEvery  = 5 * time.Second
	HistoryWindow = 10 * time.Minute
)

// Sample is one reading of what the status page charts. Accepted and
// DeadLetters are counters (charted as their rate per second); Lag and
// InFlight are gauges (charted as read).
type Sample struct {
	Accepted    float64 // records CXone accepted, since the start
	DeadLetters float64 // records written to the DLQ, since the start
	Lag         float64 // records of the partitions held that the group has not committed
	InFlight    float64 // records held: fetched, not yet settled
}

type stamped struct {
	at time.Time
	s  Sample
}

// History keeps the last samples in a ring of fixed size: its memory does
// not grow with time. It is safe for concurrent use.
type History struct {
	every time.Duration
	read  func() Sample

	mu   sync.Mutex
	ring []stamped // cap is the size; full once len == cap
	next int       // where the next sample goes once full
}

// NewHistory returns a history that Run fills from read every every,
// keeping points intervals: points+1 samples, since each point is the
// interval between two of them.
func NewHistory(every time.Duration, points int, read func() Sample) *History {
	if points < 1 {
		points = 1
	}
	return &History{every: every, read: read, ring: make([]stamped, 0, points+1)}
}

// NewStatusHistory is the status page's history: HistoryWindow in steps of
// HistoryEvery.
func NewStatusHistory(read func() Sample) *History {
	return NewHistory(HistoryEvery, int(HistoryWindow/HistoryEvery), read)
}

// Run samples at once, then every step until ctx ends.
func (h *History) Run(ctx context.Context) {
	t := time.NewTicker(h.every)
	defer t.Stop()
	h.Add(time.Now(), h.read())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Add(time.Now(), h.read())
		}
	}
}

// Add records a sample taken at at.
func (h *History) Add(at time.Time, s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) < cap(h.ring) {
		h.ring = append(h.ring, stamped{at, s})
		return
	}
	h.ring[h.next] = stamped{at, s}
	h.next = (h.next + 1) % len(h.ring)
}

// HistoryData is the charts' data (GET /history.json). Element i of every
// slice is one point: the interval that ends at TimeMS[i] (Unix
// milliseconds) and starts at TimeMS[i-1], or at StartMS for the first.
// The rates are over that interval; the gauges are as read at its end.
// Oldest first.
type HistoryData struct {
	StepSeconds          float64   `json:"step_seconds"`
	WindowSeconds        float64   `json:"window_seconds"`
	StartMS              int64     `json:"start_ms"` // 0 while there is no point
	TimeMS               []int64   `json:"time_ms"`
	AcceptedPerSecond    []float64 `json:"accepted_per_second"`
	DeadLettersPerSecond []float64 `json:"dead_letters_per_second"`
	Lag                  []float64 `json:"lag"`
	InFlight             []float64 `json:"in_flight"`
}

// Data returns the points, oldest first.
func (h *History) Data() HistoryData {
	h.mu.Lock()
	samples := make([]stamped, 0, len(h.ring))
	samples = append(samples, h.ring[h.next:]...)
	samples = append(samples, h.ring[:h.next]...)
	points := cap(h.ring) - 1
	h.mu.Unlock()

	n := max(len(samples)-1, 0)
	d := HistoryData{
		StepSeconds: h.every.Seconds(), WindowSeconds: (time.Duration(points) * h.every).Seconds(),
		TimeMS: make([]int64, 0, n), AcceptedPerSecond: make([]float64, 0, n), DeadLettersPerSecond: make([]float64, 0, n),
		Lag: make([]float64, 0, n), InFlight: make([]float64, 0, n),
	}
	for i := 1; i < len(samples); i++ {
		prev, cur := samples[i-1], samples[i]
		secs := cur.at.Sub(prev.at).Seconds()
		if secs <= 0 {
			continue // a clock step back, or two samples at once: no interval
		}
		if len(d.TimeMS) == 0 {
			d.StartMS = prev.at.UnixMilli()
		}
		d.TimeMS = append(d.TimeMS, cur.at.UnixMilli())
		d.AcceptedPerSecond = append(d.AcceptedPerSecond, increase(prev.s.Accepted, cur.s.Accepted)/secs)
		d.DeadLettersPerSecond = append(d.DeadLettersPerSecond, increase(prev.s.DeadLetters, cur.s.DeadLetters)/secs)
		d.Lag = append(d.Lag, cur.s.Lag)
		d.InFlight = append(d.InFlight, cur.s.InFlight)
	}
	return d
}

// increase is how much a counter grew from prev to cur. A counter that went
// down was reset (its source started again from zero) in between: it grew
// by at least cur, the way Prometheus's rate() reads it.
func increase(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// ServeHTTP serves Data as JSON.
func (h *History) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.Data())
}
