// Package dispatch is the policy between fetching a record and settling
// it: [Dispatcher] runs one job per record with the configured ordering
// (design invariant 3: per key, per partition or none) and holds at most
// max_in_flight jobs and max_in_flight_bytes of records, blocking Submit
// while it is full; one ordering lane (a key, or a partition in partition
// mode) may be limited to a share of the slots (invariant 4).
//
// What it does not do: no Kafka, no network, no clock of its own, no
// retries, no commits and no metrics. It does not decode, publish or
// dead-letter records, and it does not settle them: a job's Run settles
// its record with the consumer, which tracks the settled offsets of each
// partition and commits them (invariants 1 and 2). Generation scoping —
// discarding a revoked partition's records and not committing for it —
// belongs to the consumer; Dispatcher.Drop and Dispatcher.WaitPartition
// are its tools for draining a revoked partition.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Mode is the ordering mode (config `ordering`).
type Mode string

// The ordering modes of design invariant 3.
const (
	// ModeKey runs jobs with the same non-empty key in the same partition one
	// at a time in Submit order; other keys and keyless jobs run
	// concurrently. It is the default.
	ModeKey Mode = "key"
	// ModePartition runs one job at a time per partition, in Submit order.
	ModePartition Mode = "partition"
	// ModeNone runs every job as soon as it is submitted.
	ModeNone Mode = "none"
)

// ParseMode parses an ordering mode, case-insensitively; "" is ModeKey.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return ModeKey, nil
	case ModeKey, ModePartition, ModeNone:
		return m, nil
	}
	return "", fmt.Errorf("dispatch: unknown ordering %q (want key, partition or none)", s)
}

// ErrNoRun is returned by Submit for a Job without a Run func.
var ErrNoRun = errors.New("dispatch: job has no Run func")

// Job is the work for one record.
type Job struct {
	// Topic and Partition are the record's partition: ordering lanes,
	// Drop and WaitPartition are per partition of a topic.
	Topic     string
	Partition int
	Offset    int64
	// Key is the Kafka key. In ModeKey, jobs with the same non-empty key
	// and the same Partition are ordered; an empty key orders nothing. Only
	// Submit reads it.
	Key []byte
	// Bytes is what the job's record weighs against the byte budget
	// (MaxBytes): its key, value and headers. Only Submit and the
	// dispatcher's accounting read it.
	Bytes int64
	// Run is called exactly once, on a goroutine of the dispatcher, when the
	// job's turn comes — unless Drop discards it first. Run must settle its
	// record itself and should not panic: a panic is recovered as a last
	// resort (see OnPanic), counts as the job being done, and the next job
	// of its key runs; the record is then left unsettled and holds its
	// partition's watermark.
	Run func()
}

// Dispatcher runs jobs with an ordering mode and holds at most maxInFlight
// jobs (running or queued behind their key) and, with MaxBytes, at most that
// many bytes of records — except that a job larger than the whole budget is
// admitted alone, once nothing else is held, so that it can never wait
// forever. Jobs wait for room in Submit order (first come, first admitted),
// so a large job is not overtaken forever by small ones. Only running jobs
// have a goroutine; when one returns, the same goroutine goes on with the
// next job queued behind it. It is safe for concurrent use.
type Dispatcher struct {
	mode      Mode
	max       int   // most jobs held
	maxBytes  int64 // most bytes held; 0 = no byte budget
	laneShare int   // most jobs one ordering lane holds
	onPanic   func(j Job, v any)

	mu        sync.Mutex
	held      int
	heldBytes int64
	waiting   []*waiter     // Submits waiting for room, in arrival order
	laneRoom  chan struct{} // closed when a lane shrinks; nil unless a Submit waits for its lane
	idle      chan struct{} // closed when held drops to 0; nil unless Wait waits
	parts     map[partID]*part
	free      []*lane // recycled key lanes
}

// waiter is a Submit waiting for a slot and room in the byte budget.
type waiter struct {
	bytes    int64
	ready    chan struct{} // closed once admitted
	admitted bool          // under mu
}

// partID is a partition of a topic.
type partID struct {
	topic     string
	partition int
}

type part struct {
	held  int
	idle  chan struct{}    // closed when held drops to 0; nil unless waited on
	lanes map[string]*lane // ModeKey: the lane of every key with a running job
	lane  lane             // ModePartition: the partition's only lane
}

// lane is an ordering group: it exists (key mode) or is running
// (partition mode) while one of its jobs runs; later jobs wait in q.
type lane struct {
	key     string
	running bool
	q       []Job
	head    int
}

// held is the number of jobs of the lane: the running one and the queued.
func (l *lane) held() int {
	if !l.running {
		return 0
	}
	return 1 + len(l.q) - l.head
}

// Option sets a limit of a Dispatcher.
type Option func(*Dispatcher)

// MaxBytes bounds the bytes of the jobs held (Job.Bytes): Submit waits while
// admitting a job would pass n, unless nothing is held at all — a job larger
// than n is then admitted alone. n ≤ 0 means no byte budget (the default).
func MaxBytes(n int64) Option {
	return func(d *Dispatcher) { d.maxBytes = max(n, 0) }
}

// LaneShare bounds the jobs one ordering lane holds: in key mode the jobs
// of one key of one partition, in partition mode the jobs of one
// partition. Submit of a job whose lane holds n jobs waits until one of
// them is done; the slots it would have taken stay free for other lanes.
// Since the jobs of one partition are submitted by one fetch loop, a lane
// at its share makes only its partition's fetching wait. n is clamped to
// [1, maxInFlight]; the default is maxInFlight (no share below the whole).
// Keyless jobs in key mode and every job in ModeNone have no lane.
func LaneShare(n int) Option {
	return func(d *Dispatcher) { d.laneShare = n }
}

// New returns a dispatcher. It panics if mode is not one of the Mode
// constants (use ParseMode on configuration) or maxInFlight < 1.
func New(mode Mode, maxInFlight int, opts ...Option) *Dispatcher {
	switch mode {
	case ModeKey, ModePartition, ModeNone:
	default:
		panic(fmt.Sprintf("dispatch.New: unknown mode %q", mode))
	}
	if maxInFlight < 1 {
		panic(fmt.Sprintf("dispatch.New: maxInFlight %d < 1", maxInFlight))
	}
	d := &Dispatcher{
		mode:      mode,
		max:       maxInFlight,
		laneShare: maxInFlight,
		parts:     make(map[partID]*part),
	}
	for _, o := range opts {
		o(d)
	}
	d.laneShare = min(max(d.laneShare, 1), maxInFlight)
	return d
}

// OnPanic sets a func called with a job and the value when its Run panics
// (for logging and a metric; runtime/debug.Stack inside it shows the
// panic's stack). Call it before the first Submit. The func must not block;
// a panic in it is swallowed.
func (d *Dispatcher) OnPanic(f func(j Job, v any)) { d.onPanic = f }

// Submit hands a job to the dispatcher. It blocks while the job's lane holds
// its share (LaneShare), then while maxInFlight jobs are held or the job's
// bytes would pass the budget (MaxBytes), and returns ctx.Err() — without
// holding the job — if ctx is already done or ends while it waits. Jobs
// submitted one after another (not concurrently) to the same ordering group
// run in Submit order. Submits of one partition are expected from one
// goroutine (its fetch loop): concurrent ones may pass the lane share by
// their number.
func (d *Dispatcher) Submit(ctx context.Context, j Job) error {
	if j.Run == nil {
		return ErrNoRun
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.waitLane(ctx, j); err != nil {
		return err
	}
	if err := d.acquire(ctx, j.Bytes); err != nil {
		return err
	}
	d.mu.Lock()
	pt := d.part(partID{j.Topic, j.Partition})
	pt.held++
	l := d.laneOf(pt, j.Key, true)
	if l != nil {
		if l.running {
			l.push(j)
			d.mu.Unlock()
			return nil
		}
		l.running = true
	}
	d.mu.Unlock()
	go d.run(pt, l, j)
	return nil
}

// part returns the state of a partition, created when absent. d.mu is held.
func (d *Dispatcher) part(id partID) *part {
	pt := d.parts[id]
	if pt == nil {
		pt = &part{}
		if d.mode == ModeKey {
			pt.lanes = make(map[string]*lane)
		}
		d.parts[id] = pt
	}
	return pt
}

// laneOf returns the lane a job with key belongs to in pt: nil when it has
// none (ModeNone, or a keyless job in ModeKey), and in ModeKey nil when the
// key has no running job unless create is set. d.mu is held.
func (d *Dispatcher) laneOf(pt *part, key []byte, create bool) *lane {
	switch {
	case d.mode == ModePartition:
		return &pt.lane
	case d.mode == ModeKey && len(key) > 0:
		l := pt.lanes[string(key)]
		if l == nil && create {
			l = d.newLane(string(key))
			pt.lanes[l.key] = l
		}
		return l
	}
	return nil
}

// waitLane waits while the lane of j holds laneShare jobs.
func (d *Dispatcher) waitLane(ctx context.Context, j Job) error {
	if d.laneShare >= d.max || d.mode == ModeNone {
		return nil // the slots bound every lane already
	}
	for {
		d.mu.Lock()
		var l *lane
		if pt := d.parts[partID{j.Topic, j.Partition}]; pt != nil {
			l = d.laneOf(pt, j.Key, false)
		}
		if l == nil || l.held() < d.laneShare {
			d.mu.Unlock()
			return nil
		}
		if d.laneRoom == nil {
			d.laneRoom = make(chan struct{})
		}
		ch := d.laneRoom
		d.mu.Unlock()
		if err := wait(ctx, ch); err != nil {
			return err
		}
	}
}

// acquire takes a slot and n bytes of the budget, waiting in arrival order.
func (d *Dispatcher) acquire(ctx context.Context, n int64) error {
	d.mu.Lock()
	if len(d.waiting) == 0 && d.fits(n) {
		d.held++
		d.heldBytes += n
		d.mu.Unlock()
		return nil
	}
	w := &waiter{bytes: n, ready: make(chan struct{})}
	d.waiting = append(d.waiting, w)
	d.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	d.mu.Lock()
	if w.admitted { // admitted as ctx ended: give the room back
		d.release(n, 1)
	} else {
		i := slices.Index(d.waiting, w)
		d.waiting = slices.Delete(d.waiting, i, i+1)
		d.admit() // the waiters behind it may fit
	}
	d.notifyIdle(nil)
	d.mu.Unlock()
	return ctx.Err()
}

// fits reports whether a job of n bytes may be admitted now. d.mu is held.
func (d *Dispatcher) fits(n int64) bool {
	return d.held < d.max && (d.maxBytes == 0 || d.heldBytes == 0 || d.heldBytes+n <= d.maxBytes)
}

// release gives back jobs slots and n bytes and admits the waiters that now
// fit. d.mu is held.
func (d *Dispatcher) release(n int64, jobs int) {
	d.held -= jobs
	d.heldBytes -= n
	d.admit()
}

// admit admits waiters in arrival order while the first one fits. d.mu is
// held.
func (d *Dispatcher) admit() {
	for len(d.waiting) > 0 && d.fits(d.waiting[0].bytes) {
		w := d.waiting[0]
		d.waiting[0] = nil
		d.waiting = d.waiting[1:]
		d.held++
		d.heldBytes += w.bytes
		w.admitted = true
		close(w.ready)
	}
	if len(d.waiting) == 0 {
		d.waiting = nil // drop the consumed front
	}
}

// Drop discards the jobs of topic's partition that are queued but not started and
// returns how many; their Run is never called and their slots are freed.
// Running jobs go on. Jobs submitted after Drop are held as usual, so stop
// submitting for the partition first.
func (d *Dispatcher) Drop(topic string, partition int) int {
	d.mu.Lock()
	pt := d.parts[partID{topic, partition}]
	if pt == nil {
		d.mu.Unlock()
		return 0
	}
	n, bytes := pt.lane.clear()
	for _, l := range pt.lanes {
		ln, lb := l.clear()
		n, bytes = n+ln, bytes+lb
	}
	pt.held -= n
	d.release(bytes, n)
	d.wakeLanes()
	d.notifyIdle(pt)
	d.mu.Unlock()
	return n
}

// WaitPartition waits until topic's partition has no queued or running job,
// or returns ctx.Err() if ctx ends first.
func (d *Dispatcher) WaitPartition(ctx context.Context, topic string, partition int) error {
	d.mu.Lock()
	pt := d.parts[partID{topic, partition}]
	if pt == nil || pt.held == 0 {
		d.mu.Unlock()
		return nil
	}
	if pt.idle == nil {
		pt.idle = make(chan struct{})
	}
	ch := pt.idle
	d.mu.Unlock()
	return wait(ctx, ch)
}

// Wait waits until no job is held at all, or returns ctx.Err() if ctx ends
// first.
func (d *Dispatcher) Wait(ctx context.Context) error {
	d.mu.Lock()
	if d.held == 0 {
		d.mu.Unlock()
		return nil
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	ch := d.idle
	d.mu.Unlock()
	return wait(ctx, ch)
}

// InFlight returns the number of jobs held: running or queued.
func (d *Dispatcher) InFlight() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.held
}

// InFlightBytes returns the bytes of the jobs held (their Job.Bytes).
func (d *Dispatcher) InFlightBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.heldBytes
}

// PartitionInFlight returns the number of jobs of topic's partition held, and the
// most held by one of its lanes (0 when it has none).
func (d *Dispatcher) PartitionInFlight(topic string, partition int) (held, longestLane int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pt := d.parts[partID{topic, partition}]
	if pt == nil {
		return 0, 0
	}
	longestLane = pt.lane.held()
	for _, l := range pt.lanes {
		longestLane = max(longestLane, l.held())
	}
	return pt.held, longestLane
}

func wait(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run runs j, then the jobs queued behind it in its lane (l is nil for an
// unordered job), on this one goroutine.
func (d *Dispatcher) run(pt *part, l *lane, j Job) {
	clean := false
	defer func() {
		if clean {
			return
		}
		// Run called runtime.Goexit: this goroutine is ending, but its lane
		// must not stall.
		if next, ok := d.finish(pt, l, j); ok {
			go d.run(pt, l, next)
		}
	}()
	for {
		d.call(j)
		next, ok := d.finish(pt, l, j)
		if !ok {
			clean = true
			return
		}
		j = next
	}
}

// call runs j.Run, recovering a panic.
func (d *Dispatcher) call(j Job) {
	defer func() {
		if v := recover(); v != nil && d.onPanic != nil {
			defer func() { _ = recover() }()
			d.onPanic(j, v)
		}
	}()
	j.Run()
}

// finish releases a job j that returned and pops the next job of its lane.
func (d *Dispatcher) finish(pt *part, l *lane, j Job) (next Job, ok bool) {
	d.mu.Lock()
	pt.held--
	d.release(j.Bytes, 1)
	if l != nil {
		d.wakeLanes()
		if next, ok = l.pop(); !ok {
			l.running = false
			if d.mode == ModeKey {
				delete(pt.lanes, l.key)
				d.freeLane(l)
			}
		}
	}
	d.notifyIdle(pt)
	d.mu.Unlock()
	return next, ok
}

// wakeLanes wakes the Submits waiting for their lane to shrink; each checks
// its own lane again. d.mu is held.
func (d *Dispatcher) wakeLanes() {
	if d.laneRoom != nil {
		close(d.laneRoom)
		d.laneRoom = nil
	}
}

// notifyIdle wakes the waiters of pt (nil: none) and of d that are now
// idle. d.mu is held.
func (d *Dispatcher) notifyIdle(pt *part) {
	if pt != nil && pt.held == 0 && pt.idle != nil {
		close(pt.idle)
		pt.idle = nil
	}
	if d.held == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

func (d *Dispatcher) newLane(key string) *lane {
	if n := len(d.free); n > 0 {
		l := d.free[n-1]
		d.free[n-1] = nil
		d.free = d.free[:n-1]
		l.key = key
		return l
	}
	return &lane{key: key}
}

// freeLane recycles an idle lane, keeping its queue's capacity unless it
// grew large; at most maxInFlight lanes are kept.
func (d *Dispatcher) freeLane(l *lane) {
	l.key = ""
	if cap(l.q) > 64 {
		l.q = nil
	}
	if len(d.free) < d.max {
		d.free = append(d.free, l)
	}
}

// push queues j. The consumed front is reclaimed once it is at least half
// the slice, so a key that never drains does not grow without bound.
func (l *lane) push(j Job) {
	if len(l.q) == cap(l.q) && l.head > 0 && 2*l.head >= len(l.q) {
		n := copy(l.q, l.q[l.head:])
		clear(l.q[n:])
		l.q, l.head = l.q[:n], 0
	}
	l.q = append(l.q, j)
}

func (l *lane) pop() (Job, bool) {
	if l.head == len(l.q) {
		return Job{}, false
	}
	j := l.q[l.head]
	l.q[l.head] = Job{}
	l.head++
	if l.head == len(l.q) {
		l.q, l.head = l.q[:0], 0
	}
	return j, true
}

// clear discards the queued jobs and returns how many there were and their
// bytes.
func (l *lane) clear() (n int, bytes int64) {
	for _, j := range l.q[l.head:] {
		bytes += j.Bytes
	}
	n = len(l.q) - l.head
	clear(l.q)
	l.q, l.head = l.q[:0], 0
	return n, bytes
}
