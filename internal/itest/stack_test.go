// Package itest runs the worker against a real Kafka-protocol broker in
// process (kfake) and the CXone simulator over real HTTP, and checks the
// design's invariants from the outside: the simulator's records, the DLQ
// topic and the group's committed offsets.
package itest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/devstack"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
)

const (
	inputTopic = "cxone.events"
	dlqTopic   = "cxone.events.dlq"
	groupID    = "cxbridge-test"
)

// stack is one embedded broker and one simulator.
type stack struct {
	t      *testing.T
	broker *devstack.Broker
	sim    *sim.Server
	simURL string
	client *kafka.Client
	logs   io.Writer
}

func newStack(t *testing.T, partitions int, simCfg sim.Config) *stack {
	t.Helper()
	b, err := devstack.StartBroker(devstack.BrokerConfig{Addr: "127.0.0.1:0", Partitions: partitions,
		Topics: []string{inputTopic, dlqTopic}, MinSessionTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	s := sim.New(simCfg)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	client := &kafka.Client{Addr: kafka.TCP(b.Addrs...), Timeout: 10 * time.Second}
	st := &stack{t: t, broker: b, sim: s, simURL: srv.URL, client: client, logs: io.Discard}
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
	st.Kafka.InputTopic, st.Kafka.DLQTopic, st.Kafka.GroupID = inputTopic, dlqTopic, groupID
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
	st.Worker.Validate(&p, st.Kafka.RebalanceTimeout)
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
		}
	})
	return r
}

// write produces msgs to the input topic, hashed by key like any producer.
func (s *stack) write(msgs []kafka.Message) {
	s.t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(s.broker.Addrs...), Topic: inputTopic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchSize: 500, BatchBytes: 1000_000, BatchTimeout: time.Millisecond}
	defer w.Close()
	for i := 0; i < len(msgs); i += 500 {
		if err := w.WriteMessages(context.Background(), msgs[i:min(i+500, len(msgs))]...); err != nil {
			s.t.Fatalf("produce: %v", err)
		}
	}
}

func (s *stack) offsets() consumer.Offsets {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := consumer.ReadOffsets(ctx, s.client, groupID, inputTopic)
	if err != nil {
		s.t.Fatal(err)
	}
	return o
}

func (s *stack) dlqRecords() []kafka.Message {
	s.t.Helper()
	var out []kafka.Message
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: s.broker.Addrs, Topic: dlqTopic}, func(m kafka.Message) error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// waitCommitted waits until the group has committed every end offset.
func (s *stack) waitCommitted(timeout time.Duration) consumer.Offsets {
	s.t.Helper()
	var o consumer.Offsets
	waitFor(s.t, timeout, "every offset committed", func() bool {
		o = s.offsets()
		return o.TotalLag() == 0
	}, func() string {
		return fmt.Sprintf("committed %v end %v; simulator %+v", o.Committed, o.End, s.sim.Stats())
	})
	return o
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			var detail string
			for _, f := range state {
				detail += "; " + f()
			}
			t.Fatalf("timed out after %v waiting for: %s%s", timeout, what, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// syncWriter is a goroutine-safe log sink.
type syncWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// inputRecords reads the whole input topic, by partition/offset.
func (s *stack) inputRecords() map[[2]int64]kafka.Message {
	s.t.Helper()
	out := map[[2]int64]kafka.Message{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: s.broker.Addrs, Topic: inputTopic}, func(m kafka.Message) error {
		out[[2]int64{int64(m.Partition), m.Offset}] = m
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}
