// Package itest runs the worker against a real Kafka-protocol broker in
// process (kfake) and the CXone simulator over real HTTP, and checks the
// design's invariants from the outside: the simulator's records, the DLQ
// topic and the group's committed offsets.
package itest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/telemetry"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// The names the tests know their topics and group by; on a real broker each
// test gets its own (stack.input, stack.dlqName, stack.group).
const (
	inputTopic = "cxone.events"
	dlqTopic   = "cxone.events.dlq"
	groupID    = "cxbridge-test"
)

// stack is one broker (embedded, or the real one of testkafka's
// environment) and one simulator.
type stack struct {
	t      *testing.T
	broker *testkafka.Broker
	// The input topic, DLQ topic and group of the test on its broker.
	input, dlqName, group string
	sim                   *sim.Server
	simURL                string
	client                *kafka.Client
	logs                  io.Writer
	logLevel              slog.Leveler // of the workers' logs; nil: warnings and errors only

	publishing, peakPublishing atomic.Int64 // concurrent publish requests at the simulator
	accepts                    acceptLog    // when the simulator answered each accepted publish
}

func newStack(t *testing.T, partitions int, simCfg sim.Config) *stack {
	t.Helper()
	b := testkafka.Start(t, testkafka.Config{Partitions: partitions,
		Topics: []string{inputTopic, dlqTopic}, MinSessionTimeout: 500 * time.Millisecond})
	s := sim.New(simCfg)
	st := &stack{t: t, broker: b, sim: s, logs: io.Discard,
		input: b.Topic(inputTopic), dlqName: b.Topic(dlqTopic), group: b.Group(groupID)}
	h := s.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v2/events/publish" {
			n := st.publishing.Add(1)
			defer st.publishing.Add(-1)
			for p := st.peakPublishing.Load(); n > p; p = st.peakPublishing.Load() {
				if st.peakPublishing.CompareAndSwap(p, n) {
					break
				}
			}
			w = st.accepts.wrap(w)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	st.simURL = srv.URL
	st.client = b.Client()
	if os.Getenv("ITEST_LOG") != "" {
		st.logs = os.Stderr
	}
	return st
}

// settings are the worker's settings for this stack, with fast timings.
func (s *stack) settings() bridge.Settings {
	var st bridge.Settings
	fs := config.NewFlagSet("test")
	st.CXone.Register(fs)
	st.Kafka.Register(fs)
	st.Worker.Register(fs)
	if err := fs.Parse(nil, io.Discard); err != nil {
		s.t.Fatal(err)
	}
	st.CXone.BaseURL = s.simURL
	st.CXone.ClientID = sim.DefaultClientID
	st.CXone.ClientSecret = config.NewSecret(sim.DefaultClientSecret)
	st.CXone.RetryBackoff = 20 * time.Millisecond
	st.CXone.MaxBackoff = time.Second
	st.CXone.BreakerOpenTimeout = 500 * time.Millisecond
	st.Kafka.Brokers = s.broker.Addrs[0]
	st.Kafka.InputTopic, st.Kafka.DLQTopic, st.Kafka.GroupID = s.input, s.dlqName, s.group
	st.Kafka.SessionTimeout = 6 * time.Second
	st.Kafka.RebalanceTimeout = 5 * time.Second
	st.Kafka.HeartbeatInterval = 200 * time.Millisecond
	st.Worker.AdminAddr = "127.0.0.1:0"
	st.Worker.CommitInterval = 100 * time.Millisecond
	st.Worker.DrainTimeout = 3 * time.Second
	st.Worker.ShutdownTimeout = 5 * time.Second
	st.JoinBackoff = 100 * time.Millisecond
	st.PartitionWatchInterval = 500 * time.Millisecond
	var p config.Problems
	st.CXone.Validate(&p)
	st.Kafka.Validate(&p)
	st.Worker.Validate(&p, &st.Kafka)
	if err := p.Err(); err != nil {
		s.t.Fatal(err)
	}
	return st
}

// running is one worker running in the test.
type running struct {
	w      *bridge.Worker
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error
}

// stop cancels the worker and waits for it to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("worker: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop within 30s")
	}
}

func (s *stack) startWorker(mutate func(*bridge.Settings)) *running {
	s.t.Helper()
	st := s.settings()
	if mutate != nil {
		mutate(&st)
	}
	level := slog.LevelWarn
	if s.logLevel != nil {
		level = s.logLevel.Level()
	}
	if os.Getenv("ITEST_LOG") == "debug" {
		level = slog.LevelDebug
	} else if os.Getenv("ITEST_LOG") != "" {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: level}))
	w, err := bridge.NewWorker(st, log)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = w.Run(ctx); close(r.done) }()
	s.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			s.t.Error("a worker did not stop within 30s of its cancel")
		}
	})
	return r
}

// write produces msgs to the input topic, hashed by key like any producer.
func (s *stack) write(msgs []kafka.Message) {
	s.t.Helper()
	w := s.broker.Writer(s.input)
	w.BatchSize, w.BatchBytes = 500, 1000_000
	defer w.Close()
	for i := 0; i < len(msgs); i += 500 {
		if err := w.WriteMessages(context.Background(), msgs[i:min(i+500, len(msgs))]...); err != nil {
			s.t.Fatalf("produce: %v", err)
		}
	}
}

func (s *stack) offsets() consumer.GroupLag {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		o, err := consumer.ReadGroupLag(ctx, s.client, s.group, s.input)
		if err == nil {
			return o
		}
		// A real broker answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS
		// while it sets up the group coordinator (a fresh broker, a new group).
		if !errors.Is(err, kafka.NotCoordinatorForGroup) && !errors.Is(err, kafka.GroupCoordinatorNotAvailable) &&
			!errors.Is(err, kafka.GroupLoadInProgress) || ctx.Err() != nil {
			s.t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // before asking again; ctx bounds the loop
	}
}

func (s *stack) dlqRecords() []kafka.Message {
	s.t.Helper()
	var out []kafka.Message
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: s.broker.Addrs, Topic: s.dlqName}, func(m kafka.Message) error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// waitCommitted waits until the group has committed every end offset.
func (s *stack) waitCommitted(timeout time.Duration) consumer.GroupLag {
	s.t.Helper()
	var o consumer.GroupLag
	testutil.WaitFor(s.t, timeout, "every offset committed", func() bool {
		o = s.offsets()
		return o.TotalLag() == 0
	}, func() string {
		return fmt.Sprintf("committed %v end %v; simulator %+v", o.Committed, o.End, s.sim.Stats())
	})
	return o
}

// TestMain runs no test under -short (make test-short): every test of the
// package is an integration test (a broker, the simulator and workers, for
// seconds to minutes).
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("skipped under -short: integration tests")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// goodRecords returns n valid records over keys keys (data.key, data.seq set).
func goodRecords(n, keys int, seed uint64) []kafka.Message {
	g := produce.NewGenerator(produce.Config{Keys: keys, Size: 300, Seed: seed})
	out := make([]kafka.Message, n)
	for i := range out {
		out[i], _ = g.Next()
		out[i].Topic = ""
	}
	return out
}

// badRecords returns per of every bad kind, keyed bad-<kind>-<i>, and the
// reason each key must get.
func badRecords(per int) ([]kafka.Message, map[string]string) {
	var out []kafka.Message
	want := map[string]string{}
	for _, k := range produce.Bad {
		for i := range per {
			key := fmt.Sprintf("bad-%s-%d", k.Name, i)
			out = append(out, kafka.Message{Key: []byte(key), Value: k.Value()})
			want[key] = k.Reason
		}
	}
	return out, want
}

func shuffle(msgs []kafka.Message, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	r.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
}

// inputRecords reads the whole input topic, by partition/offset.
func (s *stack) inputRecords() map[[2]int64]kafka.Message {
	s.t.Helper()
	out := map[[2]int64]kafka.Message{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: s.broker.Addrs, Topic: s.input}, func(m kafka.Message) error {
		out[[2]int64{int64(m.Partition), m.Offset}] = m
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// keyedRecords returns keys×per valid records: key k-<i> has data.key k-<i>
// and data.seq 0..per-1 in offset order; the keys are interleaved at random.
func keyedRecords(keys, per int, seed uint64) []kafka.Message {
	order := make([]int, 0, keys*per)
	for k := range keys {
		for range per {
			order = append(order, k)
		}
	}
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	next := make([]int, keys)
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	out := make([]kafka.Message, len(order))
	for i, k := range order {
		key := fmt.Sprintf("k-%d", k)
		out[i] = kafka.Message{Key: []byte(key), Value: fmt.Appendf(nil,
			`{"eventType":"custom.itest","source":"itest","timestamp":%q,"data":{"key":%q,"seq":%d,"n":%d}}`,
			ts, key, next[k], i)}
		next[k]++
	}
	return out
}

// checkKeySequence reports how the arrivals seqs of one key break the order:
// every new seq must be the next one (no gap, no reordering); a seq seen
// before (a redelivery) is allowed; all of 0..per-1 must have arrived.
func checkKeySequence(seqs []int64, per int) error {
	seen := map[int64]bool{}
	next := int64(0)
	for i, s := range seqs {
		switch {
		case seen[s]: // a redelivery
		case s == next:
			seen[s] = true
			next++
		default:
			return fmt.Errorf("arrival %d is seq %d, want %d or a seq seen before (arrivals %v)", i, s, next, seqs)
		}
	}
	if next != int64(per) {
		return fmt.Errorf("seqs 0..%d arrived, want 0..%d (arrivals %v)", next-1, per-1, seqs)
	}
	return nil
}

// waitAccepted waits until the simulator accepted n distinct events.
func (s *stack) waitAccepted(n int64, timeout time.Duration) {
	s.t.Helper()
	testutil.WaitFor(s.t, timeout, fmt.Sprintf("%d distinct events accepted", n), func() bool {
		return s.sim.Stats().Distinct >= n
	}, func() string { return fmt.Sprintf("simulator %+v", s.sim.Stats()) })
}

// metric is the total of a metric family of r's registry, and its values by label.
func (r *running) metric(name, label string) (float64, map[string]float64) {
	return telemetry.Sum(r.w.Registry(), name, label)
}

// offsetWatch samples the group's committed offsets in the background.
type offsetWatch struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples int
	errs    int
	last    map[int]int64
	moves   map[int]int // times a partition's committed offset moved forward
	regress []string    // every backward move seen
	check   func(consumer.GroupLag) []string
	bad     []string // what check reported
}

// watchHeld watches that no committed offset moves from held until just
// before end (an outage's end): a commit during an outage would be one of
// a record CXone never took.
func (s *stack) watchHeld(every time.Duration, held consumer.GroupLag, end time.Time) *offsetWatch {
	return s.watchOffsets(every, func(o consumer.GroupLag) []string {
		if time.Until(end) < 100*time.Millisecond {
			return nil
		}
		for p, c := range o.Committed {
			if c != held.Committed[p] {
				return []string{fmt.Sprintf("partition %d committed %d during the outage (was %d)", p, c, held.Committed[p])}
			}
		}
		return nil
	})
}

// watchOffsets samples the committed offsets every interval until stop;
// check, when set, is called with every sample and returns violations.
func (s *stack) watchOffsets(every time.Duration, check func(consumer.GroupLag) []string) *offsetWatch {
	w := &offsetWatch{stop: make(chan struct{}), done: make(chan struct{}), last: map[int]int64{}, moves: map[int]int{}, check: check}
	client := s.broker.Client()
	client.Timeout = 5 * time.Second
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			o, err := consumer.ReadGroupLag(ctx, client, s.group, s.input)
			cancel()
			w.mu.Lock()
			if err != nil {
				w.errs++
			} else {
				w.samples++
				for p, c := range o.Committed {
					prev, ok := w.last[p]
					switch {
					case ok && c < prev:
						w.regress = append(w.regress, fmt.Sprintf("partition %d: %d after %d", p, c, prev))
					case ok && c > prev:
						w.moves[p]++
					}
					if !ok || c > prev {
						w.last[p] = c
					}
				}
				if w.check != nil {
					w.bad = append(w.bad, w.check(o)...)
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	s.t.Cleanup(w.halt)
	return w
}

// sampled is how many samples the watch has taken so far.
func (w *offsetWatch) sampled() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples
}

// halt stops the sampling (idempotent) and waits for it.
func (w *offsetWatch) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// warmUp writes one valid record to each of the partitions partitions
// (keys chosen with the writer's hash balancer) and waits until the
// simulator accepted them: the worker is then joined and fetching from
// every partition. It returns the records written.
func (s *stack) warmUp(partitions int, timeout time.Duration) []kafka.Message {
	s.t.Helper()
	msgs := warmRecords(partitions, partitions)
	before := s.sim.Stats().Distinct
	s.write(msgs)
	s.waitAccepted(before+int64(len(msgs)), timeout)
	return msgs
}

// warmRecords returns one valid record for each of partitions 0..n-1 of a
// topic of partitions partitions (keys chosen with the writer's hash
// balancer).
func warmRecords(partitions, n int) []kafka.Message {
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	var msgs []kafka.Message
	covered := map[int]bool{}
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	for i := 0; len(covered) < n; i++ {
		m := kafka.Message{Key: fmt.Appendf(nil, "warm-%d", i)}
		if p := (&kafka.Hash{}).Balance(m, ids...); p < n && !covered[p] {
			covered[p] = true
			m.Value = fmt.Appendf(nil, `{"eventType":"custom.itest","source":"itest","timestamp":%q,"data":{"warm":%d}}`, ts, i)
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// writePaced writes msgs in equal chunks every 100ms over about d, so that
// records keep arriving while the worker runs.
func (s *stack) writePaced(msgs []kafka.Message, d time.Duration) {
	s.t.Helper()
	ticks := max(1, int(d/(100*time.Millisecond)))
	per := (len(msgs) + ticks - 1) / ticks
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; i < len(msgs); i += per {
		s.write(msgs[i:min(i+per, len(msgs))])
		<-t.C
	}
}

// mix returns good with bad inserted at random places; good keeps its order.
func mix(good, bad []kafka.Message, seed uint64) []kafka.Message {
	r := rand.New(rand.NewPCG(seed, seed^0x2545f491))
	isBad := make([]bool, len(good)+len(bad))
	for _, i := range r.Perm(len(isBad))[:len(bad)] {
		isBad[i] = true
	}
	out := make([]kafka.Message, 0, len(isBad))
	g, b := 0, 0
	for _, bad1 := range isBad {
		if bad1 {
			out = append(out, bad[b])
			b++
		} else {
			out = append(out, good[g])
			g++
		}
	}
	return out
}

// dlqByKey counts the DLQ records by key and checks their reason against
// want (key → reason).
func (s *stack) dlqByKey(want map[string]string) map[string]int {
	s.t.Helper()
	seen := map[string]int{}
	for _, m := range s.dlqRecords() {
		e, ok, err := dlq.Parse(m.Headers)
		if err != nil || !ok {
			s.t.Errorf("DLQ record %s without valid headers: %v", m.Key, err)
			continue
		}
		key := string(m.Key)
		if r, ok := want[key]; !ok || string(e.Reason) != r {
			s.t.Errorf("DLQ record %s: reason %q, want %q", key, e.Reason, r)
		}
		seen[key]++
	}
	return seen
}

// checkKeys checks every key k-0..k-(keys-1) arrived 0..per-1 in order
// (redeliveries allowed), reporting at most five keys.
func (s *stack) checkKeys(keys, per int) {
	s.t.Helper()
	bad := 0
	for k := range keys {
		if err := checkKeySequence(s.sim.KeySequence(fmt.Sprintf("k-%d", k)), per); err != nil {
			if bad++; bad <= 5 {
				s.t.Errorf("key k-%d: %v", k, err)
			}
		}
	}
	if bad > 5 {
		s.t.Errorf("... %d keys out of order in all", bad)
	}
}

// observeProduce counts the produce requests to topic that match, on the
// embedded broker; nil on a real one, which cannot be watched from inside.
func observeProduce(b *testkafka.Broker, topic string, match func(*kmsg.ProduceRequest) bool) *kfake.FaultHandle {
	eb := b.Embedded()
	if eb == nil {
		return nil
	}
	return eb.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Observe: true, Count: -1,
		When: func(r kmsg.Request) bool { return match(r.(*kmsg.ProduceRequest)) }})
}

// refuseDLQ makes the broker refuse every write to the DLQ topic until
// restore is called: the embedded broker answers NOT_ENOUGH_REPLICAS (an
// injected fault), a real one has lost the topic (deleted, then created
// again by restore; a single-node broker cannot be made to miss
// min.insync.replicas: Kafka caps it at the replication factor). refused
// counts the refused produce requests on the embedded broker, -1 on a real
// one.
func (s *stack) refuseDLQ() (restore func(), refused func() int) {
	s.t.Helper()
	if eb := s.broker.Embedded(); eb != nil {
		f := eb.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: s.dlqName, Err: kerr.NotEnoughReplicas, Count: -1})
		return f.Remove, func() int { return int(f.Hits()) }
	}
	partitions := s.broker.DeleteTopic(s.dlqName)
	return func() { s.broker.CreateTopic(dlqTopic, partitions, nil) }, func() int { return -1 }
}

// setTopicConfig sets one config of topic on the broker.
func (s *stack) setTopicConfig(topic, name, value string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.client.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: name, Value: value, ConfigOperation: kafka.ConfigOperationSet}},
	}}})
	if err == nil && res.Resources[0].Error != nil {
		err = res.Resources[0].Error
	}
	if err != nil {
		s.t.Fatalf("setting %s=%s on %s: %v", name, value, topic, err)
	}
	// The controller has it; wait until the broker does too.
	testutil.WaitFor(s.t, 30*time.Second, fmt.Sprintf("the broker to apply %s=%s to %s", name, value, topic), func() bool {
		res, err := s.client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{name},
		}}})
		if err != nil || len(res.Resources) != 1 {
			return false
		}
		for _, e := range res.Resources[0].ConfigEntries {
			if e.ConfigName == name {
				return e.ConfigValue == value
			}
		}
		return false
	})
}
