package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// Result is what one scenario did, as checked from the outside.
type Result struct {
	Scenario, Fault, Size string

	Produced   int // records in the input topic
	Good, Bad  int // of which bad: marked with produce.BadHeader
	Accepted   int // good records the simulator accepted (distinct)
	Duplicates int // acceptances beyond the first, over every good record
	Unexpected int // correlation ids accepted that no good record has

	DeadLettered  int // bad records in the DLQ (distinct)
	DLQDuplicates int // DLQ records beyond the first, per bad record
	DLQWrong      int // DLQ records of a good record, or with the wrong reason

	Lost int // good records never accepted plus bad records never dead-lettered

	Lag             int64 // the group's lag at the end
	OrderViolations int64 // per-key order broken at the simulator
	Status          map[int]int64
	TokenRequests   int64
	Resets          int64 // connections the proxy reset
	BreakerOpens    int   // times a worker's circuit breaker opened (from their logs)
	Rejoins         int   // times a worker left and rejoined the group for partitions left unserved (from their logs)

	Faults            []Fault
	Kills             []KillRecovery // of the kill scenarios
	Resumed, CaughtUp time.Duration  // worst over the faults; see package doc
	Settled           time.Duration  // from the producer's start until everything was committed
	Elapsed           time.Duration  // the whole scenario

	Secrets  []string // log lines that hold a secret
	Problems []string // every broken expectation; none = the scenario passed

	size Size
}

// KillRecovery is what one kill -9 of a worker cost the group: Frozen is
// the longest time from the kill on during which the simulator accepted
// nothing — no worker published — until the group was whole again and
// publishing (Back after the kill).
type KillRecovery struct {
	Name         string
	At           time.Time
	Frozen, Back time.Duration
}

func (r *Result) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Run runs one scenario with the cxbridge binary bin, in dir.
func Run(ctx context.Context, bin, dir string, size Size, sc Scenario, logf func(string, ...any)) (res Result) {
	t0 := time.Now()
	res = Result{Scenario: sc.Name, Fault: sc.Fault, Size: size.Name, size: size}
	ctx, cancel := context.WithTimeoutCause(ctx, size.Timeout, fmt.Errorf("scenario %s took longer than %v", sc.Name, size.Timeout))
	defer cancel()
	h := &Harness{Bin: bin, Dir: dir, Size: size, Logf: logf, invalidRatio: sc.InvalidRatio, name: sc.Name}
	if h.invalidRatio == 0 {
		h.invalidRatio = 0.01
	}
	if sc.Faults != nil {
		h.baseFaults = sc.Faults(size)
	}
	h.baseFaults.Latency, h.baseFaults.LatencyJitter = sim.Duration(size.Latency), sim.Duration(size.Jitter)
	defer h.close()
	defer func() { res.Elapsed = time.Since(t0) }()

	if err := h.setup(ctx, sc.Proxy); err != nil {
		res.problem("setup: %v", err)
		return res
	}
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { h.sampleLoop(sctx); close(sampled) }()
	defer func() { stopSampling(); <-sampled }()

	workers := max(sc.Workers, 1)
	for i := range workers {
		if err := h.StartWorker(fmt.Sprintf("w%d", i)); err != nil {
			res.problem("start worker: %v", err)
			return res
		}
	}
	rate := size.Rate
	if sc.Rate != nil {
		rate = sc.Rate(size)
	}
	tp := time.Now()
	prod, err := h.start("producer", "produce", "--kafka-brokers", h.brokerAddr, "--kafka-input-topic", h.input,
		"--count", strconv.Itoa(size.Records), "--rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"--keys", strconv.Itoa(size.Keys), "--size", strconv.Itoa(size.Bytes),
		"--invalid-ratio", strconv.FormatFloat(h.invalidRatio, 'f', -1, 64))
	if err != nil {
		res.problem("start producer: %v", err)
		return res
	}
	injected := make(chan error, 1)
	go func() {
		if sc.Inject == nil {
			injected <- nil
			return
		}
		injected <- sc.Inject(ctx, h)
	}()
	if err := prod.Wait(ctx); err != nil {
		res.problem("producer: %v", err)
	}
	if err := <-injected; err != nil {
		res.problem("injecting the fault: %v", err)
	}
	// Everything settled: every end offset committed.
	if err := h.await(ctx, size.Timeout, "the group committed every end offset", func() bool {
		o, err := h.offsets(ctx)
		return err == nil && len(o.End) == partitions && o.TotalLag() == 0
	}); err != nil {
		res.problem("%v", err)
	}
	res.Settled = time.Since(tp)
	h.mu.Lock()
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range h.workers {
			if !yield(n) {
				return
			}
		}
	})
	h.mu.Unlock()
	for _, n := range names {
		if err := h.StopWorker(n); err != nil {
			res.problem("%v", err)
		}
	}
	stopSampling()
	<-sampled
	h.verify(ctx, &res, sc)
	return res
}

// verify checks the outcome from the outside.
func (h *Harness) verify(ctx context.Context, res *Result, sc Scenario) {
	h.checkProcesses(res)
	goodIDs, badKind, err := h.readInput(ctx, res)
	if err != nil {
		res.problem("reading the input topic: %v", err)
		return
	}
	if err := h.countAccepted(res, goodIDs); err != nil {
		res.problem("reading the simulator's accepted events: %v", err)
		return
	}
	if err := h.countDLQ(ctx, res, badKind); err != nil {
		res.problem("reading the DLQ: %v", err)
		return
	}
	h.readEndState(ctx, res)
	h.judge(res, sc)
}

// coord is a record's partition and offset in the input topic.
type coord struct {
	p int
	o int64
}

// checkProcesses records the faults injected and a problem for every
// process that died by itself.
func (h *Harness) checkProcesses(res *Result) {
	h.mu.Lock()
	procs := slices.Clone(h.procs)
	res.Faults = slices.Clone(h.faults)
	h.mu.Unlock()
	for _, p := range procs {
		if p.Name == "producer" {
			continue
		}
		if exited, err := p.Exited(); exited {
			res.problem("%s exited by itself: %v (log %s)", p.Name, err, p.LogPath)
		}
	}
}

// readInput reads what the input topic holds, good and bad: the
// correlation id of every good record, and the kind of every bad one.
func (h *Harness) readInput(ctx context.Context, res *Result) (goodIDs map[string]coord, badKind map[coord]string, err error) {
	goodIDs, badKind = map[string]coord{}, map[coord]string{}
	err = dlq.Scan(ctx, dlq.ReaderConfig{Brokers: []string{h.brokerAddr}, Topic: h.input}, func(m kafka.Message) error {
		res.Produced++
		c := coord{m.Partition, m.Offset}
		for _, hd := range m.Headers {
			if hd.Key == produce.BadHeader {
				badKind[c] = string(hd.Value)
				return nil
			}
		}
		rec := event.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		for _, hd := range m.Headers {
			rec.Headers = append(rec.Headers, event.Header{Key: hd.Key, Value: hd.Value})
		}
		id, _ := event.RecordIDs(rec)
		goodIDs[id] = c
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	res.Good, res.Bad = len(goodIDs), len(badKind)
	if res.Produced < h.Size.Records {
		res.problem("the input topic holds %d records, %d were produced", res.Produced, h.Size.Records)
	}
	return goodIDs, badKind, nil
}

// countAccepted counts what the simulator accepted: good records once and
// again, and correlation ids no good record has.
func (h *Harness) countAccepted(res *Result, goodIDs map[string]coord) error {
	counts, err := h.accepted()
	if err != nil {
		return err
	}
	for id, n := range counts {
		if _, ok := goodIDs[id]; !ok {
			res.Unexpected++
			continue
		}
		res.Accepted++
		res.Duplicates += n - 1
	}
	res.Lost = res.Good - res.Accepted
	return nil
}

// countDLQ counts what the DLQ holds: each bad record once and again with
// the reason its kind must get, and anything else.
func (h *Harness) countDLQ(ctx context.Context, res *Result, badKind map[coord]string) error {
	kinds := map[string]string{}
	for _, k := range produce.Bad {
		kinds[k.Name] = k.Reason
	}
	inDLQ := map[coord]int{}
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: []string{h.brokerAddr}, Topic: h.dlq}, func(m kafka.Message) error {
		e, ok, err := dlq.Parse(m.Headers)
		if err != nil || !ok {
			res.DLQWrong++
			res.problem("DLQ record %d/%d without valid headers: %v", m.Partition, m.Offset, err)
			return nil
		}
		c := coord{e.Partition, e.Offset}
		kind, bad := badKind[c]
		switch {
		case e.Topic != h.input || !bad:
			res.DLQWrong++
			res.problem("DLQ record %d/%d: %s/%d/%d is not a bad record (reason %s: %s)", m.Partition, m.Offset, e.Topic, e.Partition, e.Offset, e.Reason, e.Error)
		case string(e.Reason) != kinds[kind]:
			res.DLQWrong++
			res.problem("DLQ record of %d/%d (%s): reason %s, want %s", e.Partition, e.Offset, kind, e.Reason, kinds[kind])
		default:
			inDLQ[c]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for c := range badKind {
		switch n := inDLQ[c]; {
		case n == 0:
			res.Lost++
		default:
			res.DeadLettered++
			res.DLQDuplicates += n - 1
		}
	}
	return nil
}

// readEndState reads the simulator's view and the group's offsets, the
// recovery times from the samples, and the processes' logs.
func (h *Harness) readEndState(ctx context.Context, res *Result) {
	if st, err := h.simStats(); err == nil {
		res.OrderViolations, res.Status, res.TokenRequests = st.OrderViolations, st.ByStatus, st.TokenRequests
	}
	if o, err := h.offsets(ctx); err == nil {
		res.Lag = o.TotalLag()
	} else {
		res.Lag = -1
	}
	h.recovery(res)
	res.Secrets, res.BreakerOpens, res.Rejoins = h.scanLogs()
	if h.proxy != nil {
		res.Resets = h.proxy.Resets.Load()
	}
}

// judge records a problem for every broken expectation of the counts.
func (h *Harness) judge(res *Result, sc Scenario) {
	if res.Lost != 0 {
		res.problem("%d records lost (%d good never accepted, %d bad never dead-lettered)", res.Lost, res.Good-res.Accepted, res.Bad-res.DeadLettered)
	}
	if res.Unexpected != 0 {
		res.problem("%d correlation ids accepted that no good record has", res.Unexpected)
	}
	if res.Lag != 0 {
		res.problem("the group's lag is %d at the end", res.Lag)
	}
	if res.OrderViolations != 0 {
		res.problem("%d per-key order violations at the simulator", res.OrderViolations)
	}
	if sc.Took != nil {
		if err := sc.Took(*res); err != nil {
			res.problem("%v", err)
		}
	}
	if len(res.Secrets) > 0 {
		res.problem("%d log lines hold a secret, e.g. %s", len(res.Secrets), res.Secrets[0])
	}
}

func (h *Harness) accepted() (map[string]int, error) {
	resp, err := h.hc.Get("http://" + h.simAddr + "/sim/accepted")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /sim/accepted: %s", resp.Status)
	}
	out := map[string]int{}
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var l sim.AcceptedLine
		if err := dec.Decode(&l); err != nil {
			return nil, err
		}
		out[l.CorrelationID] = l.Count
	}
	return out, nil
}

// recovery measures, for every fault, the time from its end until the
// simulator accepted again (resumed) and until the group's lag was back
// to what it was before the fault (caught up), before the next fault.
func (h *Harness) recovery(res *Result) {
	h.mu.Lock()
	samples := slices.Clone(h.samples)
	h.mu.Unlock()
	faults := slices.Clone(res.Faults)
	sort.Slice(faults, func(i, j int) bool { return faults[i].Start.Before(faults[j].Start) })
	slack := int64(max(50, h.Size.Rate/2))
	for _, f := range faults {
		if f.Recovered.IsZero() {
			continue
		}
		// The longest gap between acceptances from the kill until the
		// group was whole and publishing again (sampled every 100 ms).
		last, frozen := f.Start, time.Duration(0)
		var prev int64 = -1
		for _, s := range samples {
			if s.distinct < 0 {
				continue
			}
			if s.t.Before(f.Start) || s.t.After(f.Recovered) {
				prev = s.distinct
				continue
			}
			if prev >= 0 && s.distinct > prev {
				frozen = max(frozen, s.t.Sub(last))
				last = s.t
			}
			prev = s.distinct
		}
		frozen = max(frozen, f.Recovered.Sub(last))
		res.Kills = append(res.Kills, KillRecovery{Name: f.Name, At: f.Start, Frozen: frozen, Back: f.Recovered.Sub(f.Start)})
	}
	for i, f := range faults {
		next := time.Now()
		if i+1 < len(faults) {
			next = faults[i+1].Start
		}
		var before, atEnd sample
		for _, s := range samples {
			if s.t.Before(f.Start) && s.lag >= 0 {
				before = s
			}
			if !s.t.After(f.End) && s.distinct >= 0 {
				atEnd = s
			}
		}
		resumed, caught := false, false
		for _, s := range samples {
			if !s.t.After(f.End) || s.t.After(next) {
				continue
			}
			if !resumed && s.distinct > atEnd.distinct {
				resumed = true
				res.Resumed = max(res.Resumed, s.t.Sub(f.End))
			}
			if !caught && s.lag >= 0 && s.lag <= before.lag+slack {
				caught = true
				res.CaughtUp = max(res.CaughtUp, s.t.Sub(f.End))
			}
		}
	}
}

// secretPatterns are what must never be logged: the client secret (added
// per run), tokens the simulator issues, bearer credentials.
var secretPatterns = []*regexp.Regexp{
	regexp.MustCompile(`sim_[A-Z2-7]{20,}`),
	regexp.MustCompile(`(?i)bearer\s+[A-Za-z0-9._~+/-]{16,}`),
}

// breakerOpened matches a worker's log line of its breaker opening.
var breakerOpened = regexp.MustCompile(`"msg":"circuit breaker state changed".*"to":"open"`)

// rejoined matches a worker's log line of its leaving the group to rejoin
// it, for partitions the group left unserved.
var rejoined = regexp.MustCompile(`"msg":"leaving the consumer group and joining it again`)

// scanLogs returns every log line of every process that holds a secret,
// and how many times a breaker opened.
func (h *Harness) scanLogs() (secrets []string, breakerOpens, rejoins int) {
	h.mu.Lock()
	procs := slices.Clone(h.procs)
	h.mu.Unlock()
	patterns := append([]*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(h.secret))}, secretPatterns...)
	seen := map[string]bool{}
	var out []string
	for _, p := range procs {
		if seen[p.LogPath] {
			continue
		}
		seen[p.LogPath] = true
		f, err := os.Open(p.LogPath)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", p.LogPath, err))
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		n := 0
		for sc.Scan() {
			n++
			line := sc.Text()
			if slices.ContainsFunc(patterns, func(re *regexp.Regexp) bool { return re.MatchString(line) }) {
				out = append(out, fmt.Sprintf("%s:%d: %.200s", p.LogPath, n, line))
			}
			if breakerOpened.MatchString(line) {
				breakerOpens++
			}
			if rejoined.MatchString(line) {
				rejoins++
			}
		}
		f.Close()
	}
	return out, breakerOpens, rejoins
}
