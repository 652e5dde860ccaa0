package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/produce"
)

func init() {
	register("produce", "write sample CXone events, or orders to map with --transform (--shape), and bad records to the input topic", runProduce)
}

type produceSettings struct {
	kafka config.Kafka
	cfg   produce.Config
}

func produceFlags(s *produceSettings) *config.FlagSet {
	fs := config.NewFlagSet("produce")
	s.kafka.Register(fs)
	fs.IntVar(&s.cfg.Count, "count", 1000, "records to write; 0 writes until interrupted")
	fs.Float64Var(&s.cfg.Rate, "rate", 0, "records per second; 0 is as fast as the broker takes them")
	fs.IntVar(&s.cfg.Keys, "keys", 100, "distinct Kafka keys; 0 writes records without a key")
	fs.IntVar(&s.cfg.Size, "size", 300, "approximate size of each event's data, in bytes")
	fs.Float64Var(&s.cfg.InvalidRatio, "invalid-ratio", 0, "share of bad records (every kind in turn, each marked by a "+produce.BadHeader+" header naming its kind), 0–1")
	fs.DurationVar(&s.cfg.RetryFor, "retry-for", produce.DefaultRetryFor, "how long failed writes are retried (a broker restarting) before giving up")
	shapeFlag(fs, &s.cfg.Shape)
	return fs
}

func runProduce(ctx context.Context, args []string, env Env) error {
	var s produceSettings
	fs := produceFlags(&s)
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	var p config.Problems
	s.kafka.Validate(&p)
	if s.cfg.Count < 0 {
		p.Add("count", "must not be negative, got %d", s.cfg.Count)
	}
	if s.cfg.Rate < 0 {
		p.Add("rate", "must not be negative, got %g", s.cfg.Rate)
	}
	if s.cfg.Keys < 0 {
		p.Add("keys", "must not be negative, got %d", s.cfg.Keys)
	}
	if s.cfg.Size < 0 || s.cfg.Size > 400_000 {
		p.Add("size", "must be between 0 and 400000, got %d", s.cfg.Size)
	}
	if s.cfg.RetryFor <= 0 {
		p.Add("retry-for", "must be positive, got %s", s.cfg.RetryFor)
	}
	if s.cfg.InvalidRatio < 0 || s.cfg.InvalidRatio > 1 {
		p.Add("invalid-ratio", "must be between 0 and 1, got %g", s.cfg.InvalidRatio)
	}
	checkShape(&p, s.cfg.Shape)
	if err := p.Err(); err != nil {
		return err
	}
	tr, err := s.kafka.Transport()
	if err != nil {
		return err
	}
	s.cfg.Brokers, s.cfg.Topic, s.cfg.Transport = s.kafka.BrokerList(), s.kafka.FirstInputTopic(), tr // the first of several input topics
	s.cfg.OnRetry = func(err error, wait time.Duration) {
		fmt.Fprintf(env.Stderr, "produce: write failed, retrying in %s: %v\n", wait, err)
	}
	var st produce.Stats
	start := time.Now()
	last := start
	err = produce.Run(ctx, s.cfg, &st, func(n int64) {
		if time.Since(last) >= 2*time.Second {
			last = time.Now()
			fmt.Fprintf(env.Stderr, "produce: %d written (%.0f/s)\n", n, float64(n)/time.Since(start).Seconds())
		}
	})
	el := time.Since(start)
	fmt.Fprintf(env.Stdout, "produce: wrote %d %s records (%d bad) to %s in %s (%.0f records/s)\n",
		st.Written.Load(), s.cfg.Shape, st.Invalid.Load(), s.cfg.Topic, el.Round(time.Millisecond), float64(st.Written.Load())/el.Seconds())
	return err
}

// shapeFlag defines --shape, the producer's record shape (produce and dev).
func shapeFlag(fs *config.FlagSet, shape *string) {
	fs.StringVar(shape, "shape", produce.ShapeCXone, "what the producer writes: cxone (CXone events) or order (a shop's orders, no CXone events: "+
		"the worker needs a --transform program for them, e.g. the README's)")
}

func checkShape(p *config.Problems, shape string) {
	if err := produce.CheckShape(shape); err != nil || shape == "" {
		p.Add("shape", "must be %s, got %q", strings.Join(produce.Shapes, " or "), shape)
	}
}
