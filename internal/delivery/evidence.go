package delivery

import (
	"math"
	"sync/atomic"
	"time"
)

// evidenceMargin is how far around a failed attempt CXone's other answers
// are looked at (see evidence). An outage shorter than about twice this
// may pass for the event's fault; a longer one never does.
const evidenceMargin = time.Second

// evidence tells a failure that is the event's fault from one that is
// CXone's. Attempts are numbered as they are sent; it keeps the highest
// number, and the latest send time, of an attempt answered normally (a
// 2xx, or a verdict on its event: a 4xx other than 401 and 429).
//
// A failed attempt counts against its event when CXone demonstrably worked
// while it was out: either an attempt sent after it was answered normally
// by the time its failure came back (inside its flight); or CXone answered
// normally both an attempt sent at most evidenceMargin before it (by the
// time its failure came back) and one sent after it, within
// evidenceMargin of its failure (around its flight). Send order keeps out
// the edges of an outage: an answer to an attempt sent before this one
// says nothing of the time after it was sent, and an answer that comes
// only after its failure says nothing of the time it was out — each side
// alone is never evidence, so CXone must have worked on both sides of the
// failure, less than 2·evidenceMargin apart. Nothing here depends on how
// many records are in flight: with none answered, nothing is evidence.
type evidence struct {
	epoch      time.Time
	sent       atomic.Uint64
	lastNormal atomic.Uint64 // highest number of an attempt answered normally
	normalSent atomic.Int64  // latest send time (since epoch) of an attempt answered normally
}

func newEvidence() *evidence {
	e := &evidence{epoch: time.Now()}
	e.normalSent.Store(math.MinInt64) // none yet
	return e
}

// mark is an attempt's number in the order of sending, and when it was sent.
type mark struct {
	seq uint64
	at  time.Duration
}

// send numbers an attempt about to be sent.
func (e *evidence) send() mark {
	return mark{seq: e.sent.Add(1), at: time.Since(e.epoch)}
}

// answeredNormally notes a normal answer to the attempt m.
func (e *evidence) answeredNormally(m mark) {
	for {
		cur := e.lastNormal.Load()
		if m.seq <= cur || e.lastNormal.CompareAndSwap(cur, m.seq) {
			break
		}
	}
	for {
		cur := e.normalSent.Load()
		if int64(m.at) <= cur || e.normalSent.CompareAndSwap(cur, int64(m.at)) {
			break
		}
	}
}

// after reports whether an attempt sent after m has been answered normally.
func (e *evidence) after(m mark) bool { return e.lastNormal.Load() > m.seq }

// before reports whether an attempt sent at most evidenceMargin before m
// (or after it) has been answered normally.
func (e *evidence) before(m mark) bool { return e.normalSent.Load() >= int64(m.at-evidenceMargin) }
