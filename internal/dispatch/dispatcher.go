// Package dispatch holds the two pieces of pure policy between fetching a
// record and committing its offset:
//
//   - [Dispatcher] runs one job per record with the configured ordering
//     (design invariant 3: per key, per partition or none) and holds at most
//     max_in_flight jobs, blocking Submit while it is full (invariant 4).
//   - [Tracker] follows, per partition, which fetched records are settled
//     and yields the contiguous watermark that may be committed, never
//     moving it backwards (invariants 1 and 2).
//
// What it does not do: no Kafka, no network, no clock of its own, no
// retries, no commits and no metrics. It does not decode, publish or
// dead-letter records, and it does not settle them: a job's Run must
// settle its record in the partition's Tracker (accepted or dead-lettered).
// Generation scoping — discarding a revoked partition's Tracker and not
// committing for it — belongs to the consumer; Dispatcher.Drop and
// Dispatcher.WaitPartition are its tools for draining a revoked partition.
package dispatch

import (
	"context"
	"errors"
	"fmt"
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
	Partition int
	Offset    int64
	// Key is the Kafka key. In ModeKey, jobs with the same non-empty key
	// and the same Partition are ordered; an empty key orders nothing. Only
	// Submit reads it.
	Key []byte
	// Run is called exactly once, on a goroutine of the dispatcher, when the
	// job's turn comes — unless Drop discards it first. Run must settle its
	// record itself and should not panic: a panic is recovered as a last
	// resort (see OnPanic), counts as the job being done, and the next job
	// of its key runs; the record is then left unsettled and holds its
	// partition's watermark.
	Run func()
}

// Dispatcher runs jobs with an ordering mode and at most maxInFlight jobs
// held (running or queued behind their key). Only running jobs have a
// goroutine; when one returns, the same goroutine goes on with the next job
// queued behind it. It is safe for concurrent use.
type Dispatcher struct {
	mode    Mode
	sem     chan struct{} // one token per held job: Submit blocks while full
	onPanic func(j Job, v any)

	mu    sync.Mutex
	held  int
	idle  chan struct{} // closed when held drops to 0; nil unless Wait waits
	parts map[int]*part
	free  []*lane // recycled key lanes
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

// New returns a dispatcher. It panics if mode is not one of the Mode
// constants (use ParseMode on configuration) or maxInFlight < 1.
func New(mode Mode, maxInFlight int) *Dispatcher {
	switch mode {
	case ModeKey, ModePartition, ModeNone:
	default:
		panic(fmt.Sprintf("dispatch.New: unknown mode %q", mode))
	}
	if maxInFlight < 1 {
		panic(fmt.Sprintf("dispatch.New: maxInFlight %d < 1", maxInFlight))
	}
	return &Dispatcher{
		mode:  mode,
		sem:   make(chan struct{}, maxInFlight),
		parts: make(map[int]*part),
	}
}

// OnPanic sets a func called with a job and the value when its Run panics
// (for logging and a metric; runtime/debug.Stack inside it shows the
// panic's stack). Call it before the first Submit. The func must not block;
// a panic in it is swallowed.
func (d *Dispatcher) OnPanic(f func(j Job, v any)) { d.onPanic = f }

// Submit hands a job to the dispatcher. It blocks while maxInFlight jobs
// are held, and returns ctx.Err() — without holding the job — if ctx is
// already done or ends while it waits. Jobs submitted one after another
// (not concurrently) to the same ordering group run in Submit order.
func (d *Dispatcher) Submit(ctx context.Context, j Job) error {
	if j.Run == nil {
		return ErrNoRun
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	pt := d.parts[j.Partition]
	if pt == nil {
		pt = &part{}
		if d.mode == ModeKey {
			pt.lanes = make(map[string]*lane)
		}
		d.parts[j.Partition] = pt
	}
	pt.held++
	d.held++
	var l *lane
	switch {
	case d.mode == ModePartition:
		l = &pt.lane
	case d.mode == ModeKey && len(j.Key) > 0:
		l = pt.lanes[string(j.Key)]
		if l == nil {
			l = d.newLane(string(j.Key))
			pt.lanes[l.key] = l
		}
	}
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

// Drop discards the jobs of partition that are queued but not started and
// returns how many; their Run is never called and their slots are freed.
// Running jobs go on. Jobs submitted after Drop are held as usual, so stop
// submitting for the partition first.
func (d *Dispatcher) Drop(partition int) int {
	d.mu.Lock()
	pt := d.parts[partition]
	if pt == nil {
		d.mu.Unlock()
		return 0
	}
	n := pt.lane.clear()
	for _, l := range pt.lanes {
		n += l.clear()
	}
	pt.held -= n
	d.held -= n
	d.notifyIdle(pt)
	d.mu.Unlock()
	for range n {
		<-d.sem
	}
	return n
}

// WaitPartition waits until the partition has no queued or running job,
// or returns ctx.Err() if ctx ends first.
func (d *Dispatcher) WaitPartition(ctx context.Context, partition int) error {
	d.mu.Lock()
	pt := d.parts[partition]
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
		if next, ok := d.finish(pt, l); ok {
			go d.run(pt, l, next)
		}
	}()
	for {
		d.call(j)
		next, ok := d.finish(pt, l)
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

// finish releases a job that returned and pops the next job of its lane.
func (d *Dispatcher) finish(pt *part, l *lane) (next Job, ok bool) {
	d.mu.Lock()
	pt.held--
	d.held--
	if l != nil {
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
	<-d.sem
	return next, ok
}

// notifyIdle wakes the waiters of pt and of d that are now idle. d.mu is
// held.
func (d *Dispatcher) notifyIdle(pt *part) {
	if pt.held == 0 && pt.idle != nil {
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
// grew large; at most cap(sem) lanes are kept.
func (d *Dispatcher) freeLane(l *lane) {
	l.key = ""
	if cap(l.q) > 64 {
		l.q = nil
	}
	if len(d.free) < cap(d.sem) {
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

// clear discards the queued jobs and returns how many there were.
func (l *lane) clear() int {
	n := len(l.q) - l.head
	clear(l.q)
	l.q, l.head = l.q[:0], 0
	return n
}
