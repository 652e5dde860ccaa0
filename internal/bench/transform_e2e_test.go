package bench

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/produce"
)

// readmeTransform is the README's example mapping, as given there.
const readmeTransform = `{eventType: ("order." + .status), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}`

// BenchmarkEndToEndTransform is the cost of --transform end to end: the
// backlog phase of BenchmarkEndToEnd at 20 ms of simulator latency,
// ordering key, twice — CXone events published as they are, and order
// records of about the same size (produce.ShapeOrder) mapped by the README's
// example program — in one run, so that the two rates are taken side by
// side on the same machine. Run it with -benchtime 1x (one iteration is one
// full backlog) and -count 3 or more:
//
//	go test -run '^$' -bench 'EndToEndTransform' -benchtime 1x -count 3 -timeout 60m ./internal/bench/
//
// Metrics: events/s, drain-events/s, CPU-s/1000ev and load1 as in
// BenchmarkEndToEnd (-e2e.records sets the backlog).
func BenchmarkEndToEndTransform(b *testing.B) {
	for _, c := range []struct {
		name, shape string
		env         []string
	}{
		{"latency=20ms/ordering=key/untransformed", produce.ShapeCXone, nil},
		{"latency=20ms/ordering=key/transform=readme", produce.ShapeOrder, []string{"CXBRIDGE_TRANSFORM=" + readmeTransform}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var rs []result
			for range b.N {
				b.StopTimer()
				rs = append(rs, runBacklog(b, 20*time.Millisecond, c.shape, c.env))
			}
			b.StopTimer()
			n := float64(*flagRecords)
			var rate, drain, cpu, load float64
			for _, r := range rs {
				rate += n / r.elapsed.Seconds() / float64(len(rs))
				drain += n / r.drain.Seconds() / float64(len(rs))
				cpu += r.workerCPU.Seconds() / n * 1000 / float64(len(rs))
				load += r.load1 / float64(len(rs))
			}
			b.ReportMetric(n, "records")
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(drain, "drain-events/s")
			b.ReportMetric(cpu, "CPU-s/1000ev")
			b.ReportMetric(load, "load1")
		})
	}
}

// runBacklog writes a backlog of -e2e.records records of shape, starts a
// worker (ordering key; env added to its environment) and times it until
// every offset is committed.
func runBacklog(b *testing.B, latency time.Duration, shape string, env []string) result {
	st := newStack(b, latency)
	defer st.close()
	records := *flagRecords
	var ps produce.Stats
	pcfg := produce.Config{Brokers: st.broker.Addrs, Topic: st.topic, Count: records, Keys: keys, Size: dataSize, Seed: 1, Shape: shape}
	if err := produce.Run(context.Background(), pcfg, &ps, nil); err != nil {
		b.Fatal(err)
	}
	if lag := st.lag(b); lag != int64(records) {
		b.Fatalf("lag %d before the worker starts, want %d", lag, records)
	}
	var res result
	b.StartTimer()
	w := st.startWorker(b, "127.0.0.1:0", "key", env...)
	first, done := st.waitDrained(b, w, 30*time.Minute)
	b.StopTimer()
	res.elapsed, res.startup, res.drain = done.Sub(w.started), first.Sub(w.started), done.Sub(first)
	res.load1 = load1()
	ru := w.stop(b)
	res.workerCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// Every record accepted once (the orders' correlation id is their
	// orderId, unique within the run), in key order, nothing dead-lettered.
	s := st.sim.Stats()
	if s.Distinct != int64(records) || s.OrderViolations != 0 || s.ByStatus[http.StatusOK] != s.Accepted {
		b.Errorf("%s: simulator %+v; want %d distinct, no order violation, only 200s", shape, s, records)
		st.logDeadLetters(b)
	}
	b.Logf("%s backlog %d: %v (start-up %v, drain %v), worker CPU %v, duplicates %d, load %.2f", shape, records,
		res.elapsed.Round(time.Millisecond), res.startup.Round(time.Millisecond), res.drain.Round(time.Millisecond),
		res.workerCPU.Round(time.Millisecond), s.Duplicates, res.load1)
	return res
}

// logDeadLetters logs the first dead letters (reason, error, origin): why
// records were settled without CXone accepting them.
func (st *stack) logDeadLetters(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: st.broker.Addrs, Topic: st.dlq}, func(m kafka.Message) error {
		if n++; n <= 5 {
			e, _, _ := dlq.Parse(m.Headers)
			b.Logf("dead letter %d: reason %s, error %q, %s/%d/%d", n, e.Reason, e.Error, e.Topic, e.Partition, e.Offset)
		}
		return nil
	})
	b.Logf("%d dead letters (scan error: %v)", n, err)
}
