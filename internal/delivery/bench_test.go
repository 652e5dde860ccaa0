package delivery_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/testutil/benchutil"
	"github.com/cxbridge/cxbridge/internal/testutil/simcx"

	"go.uber.org/goleak"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// BenchmarkPublish measures publishes per second through the whole
// publisher (delivery.Publisher → cxone.Client, cxone.Tokens with the json
// fetcher) against the simulator on a real loopback listener, by added
// simulator latency and number of concurrent publishers. A fixed pool of
// `publishers` goroutines takes the b.N events from a shared counter, so
// concurrency does not depend on GOMAXPROCS (unlike b.RunParallel).
//
// Client and simulator share the process and its CPUs: at latency=0ms the
// figure is a CPU ceiling for both together, not the bridge's alone. At
// latency=20ms it is bounded by publishers / 20ms (Little's law).
//
// Metrics: publishes/s; p50-ms and p99-ms, the latency of one Publish call;
// where /proc is readable (Linux) and the run lasts 1s or more,
// cpu-us/publish (this process's user+system CPU time per publish, client
// and simulator together), cpu-cores (this process's CPU time / wall time)
// and busy-cores (the whole machine's, to see what other processes took).
//
//	go test -run '^$' -bench BenchmarkPublish -benchtime 3s -count 5 ./internal/delivery/
func BenchmarkPublish(b *testing.B) {
	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		for _, publishers := range []int{1, 64, 256} {
			name := fmt.Sprintf("latency=%dms/publishers=%d", latency.Milliseconds(), publishers)
			b.Run(name, func(b *testing.B) { benchPublish(b, latency, publishers) })
		}
	}
}

// benchSeq makes correlation ids unique across every run in the process.
var benchSeq atomic.Int64

func benchEvent() *event.Event {
	id := strconv.FormatInt(benchSeq.Add(1), 10)
	return &event.Event{
		EventType: "custom.user.action", Source: "bench",
		Timestamp:     "2026-11-28T10:00:00.123Z",
		CorrelationID: "bench-" + id, TraceID: "trace-" + id,
		Data: []byte(`{"action":"checkout_initiated","cartValue":129.99}`),
	}
}

func benchPublish(b *testing.B, latency time.Duration, publishers int) {
	// Everything started here is stopped here: the simulator, its
	// connections, the client's connections and the token fetch.
	defer goleak.VerifyNone(b, goleak.IgnoreCurrent())

	simCtx, stopSim := context.WithCancel(context.Background())
	defer stopSim()
	s, base, err := sim.Start(simCtx, "127.0.0.1:0", sim.Config{Faults: sim.Faults{Latency: sim.Duration(latency)}})
	if err != nil {
		b.Fatal(err)
	}
	hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 512})
	defer hc.CloseIdleConnections() // before stopSim (LIFO): no idle connection is left to close
	tokens := simcx.Tokens(b, hc, base, cxone.TokensConfig{})
	pub := delivery.New(delivery.Config{MaxRetries: 3}, cxone.NewClient(hc, base, 10*time.Second), tokens)
	ctx := context.Background()

	// Warm up: the token, and one keep-alive connection per publisher.
	warm := run(ctx, pub, publishers, int64(publishers))
	if warm.failed > 0 {
		b.Fatalf("warm-up: %d of %d publishes failed: %s", warm.failed, publishers, warm.firstFailure)
	}

	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := benchutil.ReadCPU()
	r := run(ctx, pub, publishers, int64(b.N))
	cpu1 := benchutil.ReadCPU()
	b.StopTimer()

	if r.failed > 0 {
		b.Fatalf("%d of %d publishes failed, first: %s", r.failed, b.N, r.firstFailure)
	}
	want := int64(publishers + b.N)
	if st := s.Stats(); st.Accepted != want || st.Distinct != want || st.TokenRequests != 1 {
		b.Fatalf("simulator stats %+v, want %d accepted and distinct, 1 token request", st, want)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
	b.ReportMetric(ms(percentile(r.latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(r.latencies, 0.99)), "p99-ms")
	benchutil.ReportCPU(b, cpu0, cpu1)
}

type runResult struct {
	latencies    []time.Duration // sorted
	failed       int64
	firstFailure string
}

// run publishes n events from a fixed pool of workers goroutines.
func run(ctx context.Context, pub *delivery.Publisher, workers int, n int64) runResult {
	var (
		next   atomic.Int64
		failed atomic.Int64
		first  sync.Once
		res    runResult
		wg     sync.WaitGroup
	)
	lat := make([][]time.Duration, workers)
	for w := range workers {
		wg.Go(func() {
			mine := make([]time.Duration, 0, n/int64(workers)+1)
			for next.Add(1) <= n {
				ev := benchEvent()
				start := time.Now()
				out := pub.Publish(ctx, ev)
				mine = append(mine, time.Since(start))
				if out.Result != delivery.Accepted {
					failed.Add(1)
					first.Do(func() {
						res.firstFailure = fmt.Sprintf("%s (status %d %s, body %q, err %v)",
							out.Result, out.Status, http.StatusText(out.Status), out.Body, out.Err)
					})
				}
			}
			lat[w] = mine
		})
	}
	wg.Wait()
	res.latencies = slices.Concat(lat...)
	slices.Sort(res.latencies)
	res.failed = failed.Load()
	return res
}

// percentile is the nearest-rank percentile of sorted (p in (0, 1]).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
