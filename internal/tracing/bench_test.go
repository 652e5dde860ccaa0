package tracing_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/cxbridge/cxbridge/internal/tracing"
)

// BenchmarkOffPath is what tracing costs each record when it is off (no
// Setup: OpenTelemetry's global no-op provider and propagator): what
// Processor.Process and one publish attempt do — read the traceparent,
// root the trace id, start and end the record span and an attempt span,
// ask whether they record.
//
//	go test -run '^$' -bench BenchmarkOffPath -benchmem -count 5 ./internal/tracing/
func BenchmarkOffPath(b *testing.B) {
	tr := tracing.NewTracer(nil)
	hs := []kafka.Header{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		ctx := context.Background()
		if tr.On() { // as Processor.Process does
			ctx = tracing.Extract(ctx, hs)
			if !trace.SpanContextFromContext(ctx).IsValid() {
				if id, ok := tracing.TraceIDOf("8531c8b5-0684-55b3-adcf-be269195fe6e"); ok {
					ctx = tracing.WithTraceID(ctx, id)
				}
			}
		}
		ctx, rec := tr.Start(ctx, "cxbridge.process", trace.SpanKindConsumer, start)
		_, att := tr.Start(ctx, "cxone.publish", trace.SpanKindClient, start)
		if rec.IsRecording() || att.IsRecording() {
			b.Fatal("recording with tracing off")
		}
		att.End()
		rec.End()
	}
}
