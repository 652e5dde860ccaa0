// Package produce generates tutorial-like CXone events, with a chosen share
// of bad records of every kind, and writes them to a Kafka topic: the load
// generator of the demo, the benchmarks and the compose stack. With
// Config.Shape ShapeOrder it writes a shop's order records instead, which
// are no CXone events: the input of a --transform mapping (see order.go).
//
// Every good event carries data.key (its Kafka key) and data.seq (its
// position among that key's events), so that the CXone simulator can check
// per-key order; every good order carries key and seq likewise, which the
// README's mapping (data: .) puts in data.
package produce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/time/rate"

	"github.com/cxbridge/cxbridge/internal/retry"
)

// Config configures a producer run.
type Config struct {
	Brokers   []string         // Required.
	Topic     string           // Required.
	Transport *kafka.Transport // Optional: TLS, SASL, client id. Without it, a transport of the run's own.
	// Count is how many records to write; 0 writes until ctx ends.
	Count int
	// Rate is records per second; 0 is as fast as the broker takes them.
	Rate float64
	// Keys is how many distinct keys; 0 writes records without a key.
	Keys int
	// Size is the approximate size of data in bytes. Default 200.
	Size int
	// InvalidRatio is the share of bad records, spread over every kind. 0–1.
	InvalidRatio float64
	// Batch is how many records go in one write. Default 500.
	Batch int
	// Seed makes the run repeatable; 0 picks one.
	Seed uint64
	// RetryFor is how long failed writes are retried (the broker away for a
	// restart) before Run gives up. Default DefaultRetryFor.
	RetryFor time.Duration
	// OnRetry, when set, is told of every failed write that will be retried.
	OnRetry func(err error, wait time.Duration)
	// Shape is what the records are: ShapeCXone ("" too) or ShapeOrder.
	Shape string
}

// DefaultRetryFor is Config.RetryFor's default (and `cxbridge produce
// --retry-for`'s).
const DefaultRetryFor = 2 * time.Minute

// BadHeader is the header every bad record carries: the name of its kind
// (see Bad), so that a check outside the worker knows what the DLQ must hold.
const BadHeader = "cxbridge-produce-bad"

// Stats count what a run wrote.
type Stats struct {
	Written atomic.Int64
	Invalid atomic.Int64
}

var eventTypes = []string{"custom.user.action", "custom.cart.updated", "custom.order.placed", "custom.session.started"}
var actions = []string{"checkout_initiated", "item_added", "coupon_applied", "payment_submitted", "address_changed"}

// Generator builds records; it is not safe for concurrent use.
type Generator struct {
	cfg  Config
	rng  *rand.Rand
	seqs []int64
	pad  string
	n    int64
	bad  int
	run  uint32 // ShapeOrder: the run's part of every orderId
}

// NewGenerator returns a generator for cfg.
func NewGenerator(cfg Config) *Generator {
	if cfg.Size <= 0 {
		cfg.Size = 200
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	g := &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if cfg.Keys > 0 {
		g.seqs = make([]int64, cfg.Keys)
	}
	if pad := cfg.Size - 150; pad > 0 {
		g.pad = strings.Repeat("x", pad)
	}
	return g
}

// Next returns the next record and whether it is a bad one.
func (g *Generator) Next() (kafka.Message, bool) {
	g.n++
	var key string
	var seq int64
	if g.cfg.Keys > 0 {
		k := g.rng.IntN(g.cfg.Keys)
		key = fmt.Sprintf("user-%d", k)
		seq = g.seqs[k]
		g.seqs[k]++
	}
	msg := kafka.Message{Topic: g.cfg.Topic, Time: time.Now()}
	if key != "" {
		msg.Key = []byte(key)
	}
	if g.cfg.InvalidRatio > 0 && g.rng.Float64() < g.cfg.InvalidRatio {
		kinds := Bad
		if g.cfg.Shape == ShapeOrder {
			kinds = BadOrders
		}
		k := kinds[g.bad%len(kinds)] // every kind in turn
		g.bad++
		msg.Value = k.Value()
		msg.Headers = []kafka.Header{{Key: BadHeader, Value: []byte(k.Name)}}
		return msg, true
	}
	if g.cfg.Shape == ShapeOrder {
		msg.Value = g.order(key, seq)
		return msg, false
	}
	data := map[string]any{
		"action":    actions[g.rng.IntN(len(actions))],
		"cartValue": float64(g.rng.IntN(100000)) / 100,
		"userId":    fmt.Sprintf("u-%d", g.rng.IntN(1_000_000)),
		"n":         g.n,
	}
	if key != "" {
		data["key"], data["seq"] = key, seq
	}
	if g.pad != "" {
		data["padding"] = g.pad
	}
	ev := map[string]any{
		"eventType": eventTypes[g.rng.IntN(len(eventTypes))],
		"source":    "cxbridge-producer",
		"timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"data":      data,
	}
	msg.Value, _ = json.Marshal(ev)
	return msg, false
}

// Run writes records until Count is reached or ctx ends. progress, when
// set, is called after each batch with the running total.
func Run(ctx context.Context, cfg Config, st *Stats, progress func(written int64)) error {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return errors.New("produce: brokers and topic are required")
	}
	if err := CheckShape(cfg.Shape); err != nil {
		return err
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	w := &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.Topic,
		Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchSize: cfg.Batch, BatchBytes: 1000_000, BatchTimeout: 5 * time.Millisecond,
		MaxAttempts: 3, // then writeRetrying takes over, for as long as RetryFor
	}
	if cfg.Transport != nil { // a typed nil in the interface would be used
		w.Transport = cfg.Transport
	} else {
		// Its own, not kafka-go's process-wide default, whose metadata
		// cache would outlive a broker restarted on the same address.
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		w.Transport = tr
	}
	defer w.Close()
	var lim *rate.Limiter
	if cfg.Rate > 0 {
		// Small batches at a steady pace: a write every 10 ms or so, not a
		// burst every 100 ms (which would distort latency measurements).
		cfg.Batch = max(1, min(cfg.Batch, int(cfg.Rate/100)))
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Batch)
	}
	g := NewGenerator(cfg)
	batch := make([]kafka.Message, 0, cfg.Batch)
	bad := make([]bool, 0, cfg.Batch)
	for cfg.Count == 0 || st.Written.Load() < int64(cfg.Count) {
		n := cfg.Batch
		if cfg.Count > 0 {
			n = min(n, cfg.Count-int(st.Written.Load()))
		}
		if lim != nil {
			if err := lim.WaitN(ctx, n); err != nil {
				return nil // ctx ended: a clean stop
			}
		}
		batch = batch[:0]
		bad = bad[:0]
		for range n {
			m, b := g.Next()
			m.Topic = "" // the writer's topic
			batch = append(batch, m)
			bad = append(bad, b)
		}
		if err := writeRetrying(ctx, w, cfg, batch, bad, st); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil // ended while retrying: a clean stop
		}
		if progress != nil {
			progress(st.Written.Load())
		}
	}
	return nil
}

// writeRetrying writes batch, counting what was written into st. Records
// the broker refused are written again, after writeRetry's waits, until
// cfg.RetryFor passes without a successful write; a retried record may be
// written twice (kafka-go's writer is not idempotent). It returns nil when
// ctx ends.
func writeRetrying(ctx context.Context, w *kafka.Writer, cfg Config, batch []kafka.Message, bad []bool, st *Stats) error {
	deadline := time.Now().Add(cfg.RetryFor)
	p := writeRetry
	if cfg.OnRetry != nil {
		p.OnRetry = func(_ int, err error, wait time.Duration) { cfg.OnRetry(err, wait) }
	}
	err := retry.Do(ctx, p, func(int) error {
		err := w.WriteMessages(ctx, batch...)
		if ctx.Err() != nil {
			return retry.Permanent(ctx.Err())
		}
		var failed kafka.WriteErrors
		partial := errors.As(err, &failed) && len(failed) == len(batch)
		keep := 0
		for i := range batch {
			if err != nil && (!partial || failed[i] != nil) {
				batch[keep], bad[keep] = batch[i], bad[i]
				keep++
				continue
			}
			st.Written.Add(1)
			if bad[i] {
				st.Invalid.Add(1)
			}
		}
		if keep == 0 {
			return nil
		}
		if keep < len(batch) {
			deadline = time.Now().Add(cfg.RetryFor) // some got through
		}
		batch, bad = batch[:keep], bad[:keep]
		if time.Now().After(deadline) {
			return retry.Permanent(fmt.Errorf("produce to %s: %w", cfg.Topic, err))
		}
		return err
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// writeRetry is the wait between writes of the records the broker refused:
// 100 ms doubling up to 2 s.
var writeRetry = retry.Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second}
