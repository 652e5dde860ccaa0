package bridge

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil/benchutil"
	"github.com/cxbridge/cxbridge/internal/testutil/simcx"
	"github.com/cxbridge/cxbridge/internal/tracing"
)

// BenchmarkProcessTracing measures Processor.Process of valid records
// (each with a traceparent header) through the real publisher to the
// simulator on loopback, with 64 concurrent records and no added latency
// (so that the figure is CPU-bound, where the cost of tracing shows most),
// by tracing mode, side by side in one run:
//
//   - off: what runs without OTEL_EXPORTER_OTLP_* — the global no-op
//     provider and propagator (tracing.Setup installs nothing).
//   - batch: the SDK with the W3C propagator and a batching span processor
//     whose exporter drops the spans: the cost of making the spans.
//   - otlp: the SDK exporting with otlptracehttp to a local OTLP/HTTP
//     receiver that reads and drops each request: what tracing.Setup
//     installs, the export's encoding and HTTP included.
//
// Client, simulator and receiver share the process and its CPUs.
//
//	go test -run '^$' -bench BenchmarkProcessTracing -benchtime 3s -count 5 ./internal/bridge/
func BenchmarkProcessTracing(b *testing.B) {
	for _, mode := range []string{"off", "batch", "otlp"} {
		b.Run("tracing="+mode, func(b *testing.B) { benchProcess(b, mode) })
	}
}

func benchProcess(b *testing.B, mode string) {
	defer goleak.VerifyNone(b, goleak.IgnoreCurrent())
	const workers = 64

	var tp trace.TracerProvider
	switch mode {
	case "off":
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) // none, as without Setup
	case "batch":
		otel.SetTextMapPropagator(propagation.TraceContext{})
		sdk := tracing.NewProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer sdk.Shutdown(context.Background())
		tp = sdk
	case "otlp":
		otel.SetTextMapPropagator(propagation.TraceContext{})
		var received atomic.Int64
		collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			received.Add(n)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		defer collector.Close()
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(collector.URL+"/v1/traces"))
		if err != nil {
			b.Fatal(err)
		}
		sdk := tracing.NewProvider(sdktrace.WithBatcher(exp))
		defer func() {
			_ = sdk.Shutdown(context.Background())
			if received.Load() == 0 {
				b.Error("the receiver got no spans")
			}
		}()
		tp = sdk
	}
	defer otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())

	simCtx, stopSim := context.WithCancel(context.Background())
	defer stopSim()
	s, base, err := sim.Start(simCtx, "127.0.0.1:0", sim.Config{})
	if err != nil {
		b.Fatal(err)
	}
	hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 512})
	defer hc.CloseIdleConnections()
	tokens := simcx.Tokens(b, hc, base, cxone.TokensConfig{})
	pub := delivery.New(delivery.Config{MaxRetries: 3, TracerProvider: tp}, cxone.NewClient(hc, base, 10*time.Second), tokens)
	proc := NewProcessor(pub, &fakeDLQ{}, nil, ProcessorHooks{})
	if tp != nil {
		proc.WithTracerProvider(tp)
	}

	var seq atomic.Int64
	run := func(n int64) (failed int64) {
		var next, bad atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for next.Add(1) <= n {
					i := seq.Add(1)
					msg := kafka.Message{Topic: "cxone.events", Partition: int(i % 6), Offset: i,
						Value: []byte(`{"eventType":"custom.user.action","source":"bench","timestamp":"2026-11-28T10:00:00.123Z","correlationId":"bench-` +
							strconv.FormatInt(i, 10) + `","data":{"action":"checkout_initiated","cartValue":129.99}}`),
						Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}}
					if !proc.Process(context.Background(), msg) {
						bad.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return bad.Load()
	}
	if bad := run(workers); bad > 0 { // warm up: the token, the connections
		b.Fatalf("warm-up: %d records not settled", bad)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := benchutil.ReadCPU()
	bad := run(int64(b.N))
	cpu1 := benchutil.ReadCPU()
	b.StopTimer()
	if bad > 0 {
		b.Fatalf("%d of %d records not settled", bad, b.N)
	}
	if st := s.Stats(); st.Accepted != int64(workers+b.N) {
		b.Fatalf("simulator accepted %d, want %d", st.Accepted, workers+b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	benchutil.ReportCPU(b, cpu0, cpu1)
}
