package delivery

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/cxbridge/cxbridge/internal/retry"
)

// adaptiveLimit is the client-side rate limit.
//
// Configured (--cxone-rate-limit): the rate starts at the configured one times
// this member's share of the group's partitions (see setShare) and stays
// between a twentieth of that and that; a 429 halves it and each second
// with accepted publishes raises it by a tenth.
//
// Discovered (no --cxone-rate-limit): there is no limit until CXone answers 429.
// Every 429 holds every publisher of the worker for Retry-After, so a rate
// that keeps running into CXone's quota loses a second of its own traffic
// at each 429: the limit is there to make 429s rare while using the quota.
//
//   - The first 429 starts the limit at what CXone accepted in the last
//     second, doubling each second (a slow start, as TCP's) until the next
//     429, which ends the slow start at half the rate that drew it.
//   - From then on the limit remembers the rate that drew the last 429
//     (its peak) and follows a curve, as TCP CUBIC does: back towards the
//     peak quickly at first, flat near it (30 s after the 429), beyond it
//     slowly at first (3 % in 28 s), then ever faster, and once 25 % beyond
//     it (48 s) with no 429 the quota has moved: the slow start again.
//     Quota freed by CXone, or by another member of the group, is found
//     without probing the peak hard while it holds.
//   - A 429 lowers the rate gently, by a twentieth; a 429 below the last
//     peak says the quota (or this member's part of it) shrank, and the
//     peak is lowered too, below the refused rate.
//   - Time only counts while the limit holds publishers back: a worker
//     with little to send does not climb to a limit it never tried.
//   - At a rebalance the limit follows the share of partitions held (see
//     setShare): what was found for six partitions is not what two need.
//   - Members of a group even out their limits from the group's commits
//     (see balance): each 429 lowers one member's limit only, and left
//     alone the members that found the quota first would keep more of it.
//   - A throttle is told apart from a quota the limit sits just under by
//     what CXone let through between two 429s. Just under a quota, most
//     of the limit gets through (10 % even when twice over it); when
//     CXone's quota drops far below the limit (a 429 storm), a 429 comes
//     as soon as the 429 gate reopens, and less than 3 % of the limit got
//     through since the one before. Three such 429s in a row are a
//     throttle: each further one halves the rate (not below what CXone
//     took), and the limit remembers the most CXone accepted in a second
//     before it. Once no 429 has come for 1.5–4.5 s (jittered, so that
//     the members of a group do not all probe at once; doubled after each
//     failed return) the throttle may be over: back to that rate in 2 s;
//     if the limit had found the quota before the throttle it holds that
//     rate (its peak again) for another quiet 1.5–4.5 s before a slow
//     start beyond it, else (the throttle came with the first 429s) it
//     goes beyond at once. A 429 near that rate, or beyond it, ends the
//     throttle with the limit where it was before; one well below it
//     (under 90 %) says the throttle is not over, and after five such
//     the quota is taken as shrunk for good. Without this the storm's
//     rate became the peak, and the curve took a minute to climb back.
//
// Once engaged the limit is never dropped: after the quota is gone it
// keeps climbing as long as there is enough to send to reach it.
type adaptiveLimit struct {
	lim     *rate.Limiter
	auto    bool        // discovered, not configured
	engaged atomic.Bool // a limit is in force; read without mu by wait
	waited  atomic.Bool // a publisher was held back since the last step; read and reset by up

	mu       sync.Mutex
	quota    float64 // configured: --cxone-rate-limit, the group's
	share    float64 // this member's share of the group's partitions, [0, 1]
	ceiling  float64
	floor    float64
	current  float64
	slow     bool      // discovered: slow start, doubling until a 429
	peak     float64   // discovered: the rate that drew the last 429
	start    float64   // discovered: the rate after the last decrease
	k        float64   // discovered: seconds (held back) from start back to peak
	elapsed  float64   // discovered: seconds held back since the last decrease
	lastStep time.Time // last rise (configured) or step along the curve (discovered)
	lastDown time.Time

	// Discovered: a throttle, CXone's quota fallen far below the limit.
	sinceDown int     // publishes accepted since the last decrease
	thin      int     // decreases in a row that came after less than thinShare of the limit got through
	prePeak   float64 // best at the first of them
	known     bool    // the limit had found the quota before the first of them
	best      float64 // publishes accepted in a second lately: the most, fading by bestFade a second
	resume    float64 // in a throttle: the rate before it, to go back to once it is over; 0 for none
	fails     int     // returns towards resume refused in this throttle
	from      float64 // the rate a return, or a slow start after one, started from; 0 for none
	returning bool    // going back to resume, geometrically in returnK seconds
	returned  bool    // back at resume, no 429 since
	plateau   bool    // hold resume before going beyond it: it was the quota's (not a rate CXone took without limit)
	throttled bool    // a throttle since the last balance
	quiet     float64 // in a throttle: seconds without a 429 after which to find out whether it is over

	second            time.Time // start of the current one-second window
	inSecond, lastSec int       // publishes accepted in it, and in the one before
}

// The discovered limit's curve.
const (
	beta      = 0.95                   // a 429 keeps this share of the rate
	approachK = 30.0                   // seconds from a 429's decrease back to its peak
	slowExitK = 10.0                   // seconds from half the rate that ended the slow start back to it
	probeTau  = 70.0                   // beyond the peak, the rate is peak·e^((x/probeTau)⁴) after x seconds…
	reslowAt  = 1.25                   // …until it is this far beyond it: then the slow start again
	stepEvery = 100 * time.Millisecond // how often the rate moves along the curve

	thinShare = 0.03 // a 429 after less than this share of the limit got through (per second, over at least one) is thin…
	thinRun   = 3    // …and this many in a row are a throttle: each further one halves the rate
	quietMin  = 3.0  // in a throttle, no 429 for this many seconds (doubled at each return refused): it may be over…
	returnK   = 2.0  // …so back to the rate before it in this many seconds, and once quiet there too, a slow start
	maxFails  = 5    // returns refused before the quota is taken as shrunk for good
	backShare = 0.9  // a return refused this close to the rate before the throttle ends it: the quota is back
	bestFade  = 0.95 // the most accepted in a second lately fades by this much a second
)

func newAdaptiveLimit(perSecond float64) *adaptiveLimit {
	a := &adaptiveLimit{lim: rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10))), quota: perSecond, share: 1}
	a.ceiling, a.floor, a.current = perSecond, min(max(perSecond/20, 0.5), perSecond), perSecond
	a.engaged.Store(true)
	return a
}

// newDiscoveredLimit returns a limit that engages at the first 429.
func newDiscoveredLimit() *adaptiveLimit {
	return &adaptiveLimit{lim: rate.NewLimiter(rate.Inf, 1), auto: true, share: 1, ceiling: math.Inf(1), floor: 0.5}
}

// maxReserve bounds how far ahead a waiter reserves its turn: a reservation
// keeps the rate of when it was made, so 256 publishers queued at a low
// rate would otherwise wait it out after the rate has risen.
const maxReserve = 200 * time.Millisecond

// wait returns when the limit allows one more attempt, or ctx's error.
// Without a limit in force it costs one atomic load: it runs before every
// publish attempt.
func (a *adaptiveLimit) wait(ctx context.Context) error {
	if !a.engaged.Load() {
		return ctx.Err()
	}
	for {
		r := a.lim.Reserve()
		d := r.Delay()
		if d > 0 && !a.waited.Load() {
			a.waited.Store(true)
		}
		if d <= maxReserve {
			return retry.Sleep(ctx, d)
		}
		r.Cancel()
		if err := retry.Sleep(ctx, retry.Jitter(maxReserve, 0.5)); err != nil {
			return err
		}
	}
}

// down lowers the rate after a 429 to an attempt that started at sent. A
// 429 to an attempt sent before the last decrease (or admitted by a
// reservation made before it) says nothing about the lowered rate: the
// attempts in flight when CXone starts refusing would otherwise lower it
// once each.
func (a *adaptiveLimit) down(sent time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sent.Before(a.lastDown.Add(maxReserve)) { // admitted at the rate before
		return
	}
	now := time.Now()
	var got float64 // publishes/s accepted since the last decrease
	if a.auto && a.engaged.Load() {
		got = float64(a.sinceDown) / max(now.Sub(a.lastDown).Seconds(), 1)
		if a.current*thinShare >= 1 && got < thinShare*a.current {
			if a.thin == 0 {
				a.prePeak, a.known = a.best, a.peak > 0 && !a.slow
			}
			a.thin++
		} else {
			a.thin = 0
		}
	}
	through := a.sinceDown
	a.sinceDown = 0
	switch {
	case !a.auto:
		a.current = max(a.current/2, a.floor)
	case !a.engaged.Load(): // the first 429: start from what CXone took
		a.engaged.Store(true)
		a.slow = true
		a.current = float64(max(a.lastSec, a.inSecond, 2))
	case a.slow && a.peak == 0 && through == 0:
		// Nothing got through since the limit engaged: CXone took nothing
		// at any rate, so this 429 tells nothing about one. The slow start
		// stays where it began, to double from there once CXone takes
		// something. (Ending it here would make a worker that met a
		// throttle before anything got through crawl at its starting rate
		// long after the throttle.)
	case a.slow && a.from > 0: // beyond the rate before a throttle, refused: the quota is back where it was
		a.slow = false
		a.current, a.peak = a.from, a.from
		a.k = approachK
	case a.slow: // the rate doubled past the quota: half of it did not
		a.slow = false
		a.peak = a.current
		a.current = max(a.current/2, a.floor)
		a.k = slowExitK
	default:
		back := 0.0                                                       // the rate before a throttle that is over
		if a.returned || a.returning && a.current >= backShare*a.resume { // refused near the rate before the throttle: the quota is back where it was
			back, a.resume, a.fails = a.resume, 0, 0
		} else if a.returning { // the throttle is not over
			if a.fails++; a.fails >= maxFails { // nor will it be: the quota shrank
				a.resume, a.fails = 0, 0
			}
		}
		a.returning, a.returned = false, false
		if a.current < a.peak { // refused below the last peak: the quota (or this member's part of it) shrank
			a.peak = a.current * (1 + beta) / 2
		} else {
			a.peak = a.current
		}
		a.peak = max(a.peak, back)
		if a.thin >= thinRun { // a throttle: halve, as long as CXone takes a fraction of the limit
			if a.resume == 0 {
				a.resume, a.fails, a.plateau = a.prePeak, 0, a.known
			}
			a.throttled = true
			a.current = max(a.current/2, got, a.floor)
		} else {
			a.current = max(a.current*beta, a.floor)
		}
		a.k = approachK
	}
	a.from = 0
	a.quiet = quietWait(a.fails)
	a.start = a.current
	a.elapsed = 0
	a.lastStep, a.lastDown = now, now
	a.waited.Store(false)
	a.set()
}

// up counts an accepted publish and raises the rate: a configured one at
// most once a second, a discovered one along its curve.
func (a *adaptiveLimit) up() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if d := now.Sub(a.second); d >= time.Second {
		a.lastSec = a.inSecond
		if d >= 2*time.Second {
			a.lastSec = 0
		}
		a.best = max(float64(a.lastSec), a.best*math.Pow(bestFade, d.Seconds()))
		a.inSecond, a.second = 0, now
	}
	a.inSecond++
	a.sinceDown++
	if !a.engaged.Load() {
		return
	}
	if !a.auto {
		if a.current >= a.ceiling || now.Sub(a.lastStep) < time.Second {
			return
		}
		a.current = min(a.current*1.1+1, a.ceiling)
		a.lastStep = now
		a.set()
		return
	}
	d := now.Sub(a.lastStep)
	if d < stepEvery {
		return
	}
	a.lastStep = now
	if !a.waited.Swap(false) { // nobody held back: the limit is not what limits us
		return
	}
	dt := min(d, time.Second).Seconds()
	a.elapsed += dt
	if a.returning {
		r := min(a.elapsed/returnK, 1)
		a.current = max(a.current, a.from*math.Pow(a.resume/a.from, r))
		switch {
		case r < 1:
		case a.plateau: // back where the quota was before the throttle: hold it, and once quiet there too, go beyond
			a.returning, a.returned, a.from = false, true, 0
			a.peak, a.start, a.k, a.elapsed = a.resume, a.resume, approachK, 0
			a.quiet = quietWait(0)
		default: // back where it was before the throttle, under no quota known: beyond it at once
			a.returning, a.slow, a.from = false, true, a.resume
			a.resume, a.fails = 0, 0
		}
		a.set()
		return
	}
	if !a.slow && a.resume > 0 && a.elapsed >= a.quiet { // a throttle may be over: find out
		switch {
		case a.returned: // the rate before the throttle holds: the quota may be higher still
			a.slow, a.from = true, a.current
			a.resume, a.returned, a.fails = 0, false, 0
		case a.current < a.resume:
			a.returning, a.from, a.elapsed = true, a.current, 0
			return
		default:
			a.resume, a.fails = 0, 0
		}
	}
	next := a.current * math.Pow(2, dt) // never faster than the slow start
	if !a.slow {
		next = min(next, a.curve())
	}
	a.current = max(a.current, next)
	if !a.slow && a.current > reslowAt*a.peak { // far beyond where CXone last refused, and still nothing refused: the quota has moved
		a.slow = true
	}
	a.set()
}

// quietWait is how long a throttle must have been quiet before the limit
// finds out whether it is over, after fails returns refused: quietMin,
// doubled by each, jittered by ±50 % so that the members of a group, which
// meet the same throttle at the same time, do not all probe at once.
func quietWait(fails int) float64 {
	return quietMin * math.Exp2(float64(fails)) * (0.5 + rand.Float64())
}

// curve is the discovered rate elapsed seconds after the last decrease:
// from start up to the peak in k seconds, steep at first and flat at the
// end, then beyond it, slowly at first and ever faster. a.mu is held.
func (a *adaptiveLimit) curve() float64 {
	x := a.elapsed - a.k
	if x < 0 {
		r := -x / a.k
		return a.peak - (a.peak-a.start)*r*r*r
	}
	r := x / probeTau
	return a.peak * math.Exp(r*r*r*r)
}

// setShare sets this member's share of the group's partitions, s in
// [0, 1]. A configured limit becomes that share of the configured rate
// (at least half an attempt a second: a member holding nothing publishes
// nothing anyway), lowered by 429s as before, within it. A discovered one
// is scaled by the change of share: what was found for the partitions
// held before is spread over those held now; a member holding nothing
// keeps it as it was, to be scaled from there when it gets partitions
// again.
func (a *adaptiveLimit) setShare(s float64) {
	s = min(max(s, 0), 1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.auto {
		level := a.current / a.ceiling // how far 429s have lowered it
		a.share = s
		a.ceiling = max(a.quota*s, min(0.5, a.quota))
		a.floor = min(max(a.ceiling/20, 0.5), a.ceiling)
		a.current = min(max(a.ceiling*level, a.floor), a.ceiling)
		a.set()
		return
	}
	if s == 0 || s == a.share {
		return
	}
	f := s / a.share
	a.share = s
	if !a.engaged.Load() {
		return
	}
	a.current = max(a.current*f, a.floor)
	a.peak *= f
	a.start *= f
	a.prePeak *= f
	a.best *= f
	a.resume *= f
	a.from *= f
	a.set()
}

// balance moves a discovered limit towards this member's fair part of
// the group's. The members of a group cannot see each other's limits, and
// a 429 only tells the one it answers that their sum is too high: left
// alone, members that found the quota first keep more of it, finish their
// partitions first, and leave the rest of the backlog to members with a
// smaller limit, which find the freed quota only slowly. Every member
// reads the same commits: got is this member's share of what the group
// settled lately, part its share of the group's backlog. A member that got
// less than its part raises its limit (and its remembered peak) half way
// to where it would get its part, one that got more lowers it (at most
// by 4 × a step): as every member got through about the same share of its
// own limit, the limits' sum stays where 429s put it.
func (a *adaptiveLimit) balance(part, got float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	throttled := a.throttled
	a.throttled = false
	if !a.auto || !a.engaged.Load() || a.slow || a.resume > 0 || throttled || got < 0 || part < 0 || got == 0 && part == 0 {
		return
	}
	f := 4.0 // got nothing through: a member that joined late, held at the 429 gate by the others
	if got > 0 {
		f = min(max((1+part/got)/2, 0.25), 4)
	}
	if f > 0.97 && f < 1.03 {
		return
	}
	a.current = max(a.current*f, a.floor)
	a.peak *= f
	a.start *= f
	a.set()
}

// set applies the current rate, with a burst of a tenth of it: a burst
// sized for the configured rate would, each time the 429 gate reopens,
// send at once what the lowered rate never allows. a.mu is held.
func (a *adaptiveLimit) set() {
	a.lim.SetLimit(rate.Limit(a.current))
	a.lim.SetBurst(max(1, int(a.current/10)))
}

// rate is the limit in force, 0 for none.
func (a *adaptiveLimit) rate() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.engaged.Load() {
		return 0
	}
	return a.current
}
