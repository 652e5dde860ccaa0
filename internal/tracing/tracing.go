// Package tracing sets up OpenTelemetry tracing for cxbridge: spans
// exported over OTLP/HTTP when the standard environment asks for them, a
// no-op tracer otherwise.
//
// The spans themselves are made where the work is done: a span per record
// (package bridge, the Processor), a child per publish attempt (package
// delivery) and one for the DLQ write (package dlq). Those packages make
// them with a Tracer: the provider Setup installed unless given one (tests
// give them one over an in-memory exporter). Setup also installs the
// global provider and the W3C Trace Context propagator that reads a
// record's traceparent header and writes the one sent to CXone.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cxbridge/cxbridge/internal/version"
)

// Scope is the instrumentation scope of cxbridge's spans.
const Scope = "github.com/cxbridge/cxbridge"

// ServiceName is the default service.name (OTEL_SERVICE_NAME overrides it).
const ServiceName = "cxbridge"

// ShutdownTimeout bounds the flush of the spans still buffered at shutdown.
const ShutdownTimeout = 5 * time.Second

// The environment variables read here (the exporter reads the rest of
// OTEL_EXPORTER_OTLP_*: headers, timeout, compression, certificates; the
// SDK reads OTEL_TRACES_SAMPLER*, OTEL_BSP_* and OTEL_RESOURCE_ATTRIBUTES).
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvExporter       = "OTEL_TRACES_EXPORTER"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
)

// Enabled reports whether the environment asks for traces: OTEL_TRACES_EXPORTER
// is "otlp", or it is unset and OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; never when OTEL_SDK_DISABLED
// is true. An error names the setting that cannot be honoured: another
// exporter than otlp (or none), or another OTLP protocol than http/protobuf.
func Enabled() (bool, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv(EnvSDKDisabled)), "true") {
		return false, nil
	}
	on := os.Getenv(EnvEndpoint) != "" || os.Getenv(EnvTracesEndpoint) != ""
	switch exp := strings.ToLower(strings.TrimSpace(os.Getenv(EnvExporter))); exp {
	case "":
	case "none":
		return false, nil
	case "otlp":
		on = true
	default:
		return false, fmt.Errorf("%s=%q: cxbridge exports traces with otlp only (or none)", EnvExporter, exp)
	}
	if !on {
		return false, nil
	}
	for _, key := range []string{EnvTracesProtocol, EnvProtocol} {
		switch p := strings.TrimSpace(os.Getenv(key)); p {
		case "":
			continue
		case "http/protobuf":
		default:
			return false, fmt.Errorf("%s=%q: cxbridge exports traces over OTLP/HTTP (http/protobuf) only", key, p)
		}
		break // the traces-specific one wins
	}
	return true, nil
}

// Setup starts tracing when the environment asks for it (see Enabled): an
// OTLP/HTTP exporter behind a batching span processor, with service.name
// cxbridge (OTEL_SERVICE_NAME overrides it) and service.version from
// package version, installed as the global tracer provider with the W3C
// Trace Context propagator. Otherwise it changes nothing: the global
// provider stays OpenTelemetry's no-op one, and no traceparent is read or
// sent. shutdown flushes the spans still buffered, within ShutdownTimeout,
// and logs (and returns) its failure; it is safe to call when tracing is
// off.
func Setup(ctx context.Context, log *slog.Logger) (shutdown func() error, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	on, err := Enabled()
	if err != nil || !on {
		return func() error { return nil }, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter (%s): %w", EnvEndpoint, err)
	}
	res, err := Resource(ctx)
	if err != nil {
		log.Warn("tracing: some resource attributes could not be read", "error", err.Error())
	}
	tp := NewProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: exporting spans failed", "error", err.Error())
	}))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tr := tp.Tracer(Scope, trace.WithInstrumentationVersion(version.Get().Version))
	installed.Store(&tr)
	log.Info("tracing on: exporting spans over OTLP/HTTP", "endpoint", endpoint())
	return func() error {
		installed.Store(nil)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("tracing: flushing the spans at shutdown failed; some are lost", "error", err.Error())
			return fmt.Errorf("tracing: flushing spans: %w", err)
		}
		return nil
	}, nil
}

// endpoint is where spans go, for the log: without any user info or query
// (no credentials in logs).
func endpoint() string {
	v := os.Getenv(EnvTracesEndpoint)
	if v == "" {
		if v = os.Getenv(EnvEndpoint); v != "" {
			v = strings.TrimRight(v, "/") + "/v1/traces"
		} else {
			v = "http://localhost:4318/v1/traces"
		}
	}
	u, err := url.Parse(v)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// Resource describes this process: service.name cxbridge and
// service.version, overridden by OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES. The resource is usable even with an error.
func Resource(ctx context.Context) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(version.Get().Version)),
		resource.WithFromEnv(), // later detectors win: the environment overrides the defaults
	)
	if res == nil {
		res = resource.Default()
	}
	return res, err
}

// NewProvider returns an SDK tracer provider with opts whose root spans
// take the trace id put in their context by WithTraceID (see Processor in
// package bridge): a record's spans are then found by the record's own
// trace id. Setup uses it; so do tests, with an in-memory exporter.
func NewProvider(opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithIDGenerator(idGenerator{})}, opts...)...)
}

// Tracer makes cxbridge's spans: with the provider it was made with, or
// else with the one Setup installed, if it did. Without either it costs
// next to nothing: Start returns ctx unchanged and a no-op span, without
// allocating (see BenchmarkOffPath).
type Tracer struct {
	own trace.Tracer // nil: Setup's, if any
}

// NewTracer returns a Tracer using tp, or Setup's provider when tp is nil.
func NewTracer(tp trace.TracerProvider) Tracer {
	if tp == nil {
		return Tracer{}
	}
	return Tracer{own: tp.Tracer(Scope, trace.WithInstrumentationVersion(version.Get().Version))}
}

// installed is the tracer of the provider Setup installed.
var installed atomic.Pointer[trace.Tracer]

var noSpan = trace.SpanFromContext(context.Background()) // a no-op span

func (t Tracer) tracer() trace.Tracer {
	if t.own != nil {
		return t.own
	}
	if p := installed.Load(); p != nil {
		return *p
	}
	return nil
}

// On reports whether t makes spans.
func (t Tracer) On() bool { return t.tracer() != nil }

// Start starts a span named name of kind kind at start (now when zero) in
// ctx, with its parent in ctx, if any; see Tracer.
func (t Tracer) Start(ctx context.Context, name string, kind trace.SpanKind, start time.Time) (context.Context, trace.Span) {
	tr := t.tracer()
	if tr == nil {
		return ctx, noSpan
	}
	if start.IsZero() {
		return tr.Start(ctx, name, trace.WithSpanKind(kind))
	}
	return tr.Start(ctx, name, trace.WithSpanKind(kind), trace.WithTimestamp(start))
}
