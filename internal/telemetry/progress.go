package telemetry

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Progress tells whether the worker moves records: when CXone last
// accepted one. The CxbridgeNoProgress alert compares it with the clock
// while the member holds partitions with lag.
type Progress struct {
	lastAccepted atomic.Int64 // Unix nanoseconds
}

// NewProgress registers cxbridge_last_accepted_timestamp_seconds on reg.
// Until the first acceptance it is start, the worker's start: a worker that
// has accepted nothing since it started has made no progress since then
// (0 would make every fresh worker look stuck since 1970).
func NewProgress(reg prometheus.Registerer, start time.Time) *Progress {
	p := &Progress{}
	p.lastAccepted.Store(start.UnixNano())
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cxbridge_last_accepted_timestamp_seconds",
		Help: "When CXone last accepted a record from this worker (Unix time); the worker's start until the first.",
	}, func() float64 { return float64(p.lastAccepted.Load()) / 1e9 }))
	return p
}

// ObserveSettled notes a settled record: an accepted one at time at moves
// the timestamp forward (never back: publishers settle concurrently).
func (p *Progress) ObserveSettled(result string, at time.Time) {
	if result != "accepted" {
		return
	}
	ns := at.UnixNano()
	for {
		cur := p.lastAccepted.Load()
		if ns <= cur || p.lastAccepted.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// LastAccepted is the gauge's value as a time.
func (p *Progress) LastAccepted() time.Time { return time.Unix(0, p.lastAccepted.Load()) }

// Settled wraps a settled-record hook (Metrics.ObserveSettled) so that it
// also notes acceptances, at the time they are settled.
func (p *Progress) Settled(next func(result string, recordTime time.Time)) func(string, time.Time) {
	return func(result string, recordTime time.Time) {
		next(result, recordTime)
		p.ObserveSettled(result, time.Now())
	}
}
