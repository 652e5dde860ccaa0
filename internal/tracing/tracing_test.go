package tracing_test

import (
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil/simcx"
	"github.com/cxbridge/cxbridge/internal/tracing"
	"github.com/cxbridge/cxbridge/internal/version"
)

// clearEnv unsets (for the test) every variable that turns tracing on.
func clearEnv(t *testing.T) {
	for _, k := range []string{tracing.EnvEndpoint, tracing.EnvTracesEndpoint, tracing.EnvExporter,
		tracing.EnvProtocol, tracing.EnvTracesProtocol, tracing.EnvSDKDisabled, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

func TestEnabled(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		on      bool
		errName string // the setting the error must name
	}{
		{"nothing set: off", nil, false, ""},
		{"endpoint", map[string]string{tracing.EnvEndpoint: "http://collector:4318"}, true, ""},
		{"traces endpoint", map[string]string{tracing.EnvTracesEndpoint: "http://collector:4318/v1/traces"}, true, ""},
		{"exporter otlp, default endpoint", map[string]string{tracing.EnvExporter: "otlp"}, true, ""},
		{"exporter none beats an endpoint", map[string]string{tracing.EnvExporter: "none", tracing.EnvEndpoint: "http://c:4318"}, false, ""},
		{"SDK disabled", map[string]string{tracing.EnvSDKDisabled: "true", tracing.EnvEndpoint: "http://c:4318"}, false, ""},
		{"http/protobuf", map[string]string{tracing.EnvEndpoint: "http://c:4318", tracing.EnvProtocol: "http/protobuf"}, true, ""},
		{"another exporter", map[string]string{tracing.EnvExporter: "zipkin"}, false, tracing.EnvExporter},
		{"grpc", map[string]string{tracing.EnvEndpoint: "http://c:4317", tracing.EnvProtocol: "grpc"}, false, tracing.EnvProtocol},
		{"traces protocol wins", map[string]string{tracing.EnvEndpoint: "http://c:4318", tracing.EnvProtocol: "grpc", tracing.EnvTracesProtocol: "http/protobuf"}, true, ""},
		{"grpc for traces", map[string]string{tracing.EnvEndpoint: "http://c:4318", tracing.EnvTracesProtocol: "grpc"}, false, tracing.EnvTracesProtocol},
		{"grpc while off: ignored", map[string]string{tracing.EnvProtocol: "grpc"}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			on, err := tracing.Enabled()
			if tc.errName != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errName) {
					t.Fatalf("err = %v, want one naming %s", err, tc.errName)
				}
				return
			}
			if err != nil || on != tc.on {
				t.Fatalf("Enabled() = %v, %v; want %v", on, err, tc.on)
			}
			if !tc.on {
				stop, err := tracing.Setup(context.Background(), nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// Off (the default): Setup installs nothing, spans are the no-op
// provider's, and no traceparent goes to CXone even for a record that
// carries one. Runs before TestSetupExportsOverOTLPHTTP, which installs the
// global provider for the rest of the process.
func TestOffByDefault(t *testing.T) {
	clearEnv(t)
	stop, err := tracing.Setup(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); sdk {
		t.Fatal("Setup installed the SDK provider with tracing off")
	}
	_, span := tracing.NewTracer(nil).Start(context.Background(), "x", trace.SpanKindInternal, time.Time{})
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Fatalf("span with tracing off: recording %v, context %v", span.IsRecording(), span.SpanContext())
	}
	span.End()

	headers := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header.Clone()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	ctx := tracing.Extract(context.Background(), []kafka.Header{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}})
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("traceparent read with tracing off")
	}
	c := cxone.NewClient(srv.Client(), srv.URL, 5*time.Second)
	ev := &event.Event{EventType: "a.b", Source: "s", Timestamp: "2026-11-28T10:00:00Z", CorrelationID: "c", TraceID: "t", Data: []byte("{}")}
	body, _ := ev.Body()
	if res := c.Attempt(ctx, "tok", ev, body); res.Class != cxone.Accepted {
		t.Fatalf("attempt: %+v", res)
	}
	if h := <-headers; h.Get("traceparent") != "" {
		t.Fatalf("traceparent %q sent with tracing off", h.Get("traceparent"))
	}
}

// receiver is an OTLP/HTTP trace receiver: it decodes each POST /v1/traces.
type receiver struct {
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	bad      []string
	got      chan struct{}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(msg string) {
		rc.mu.Lock()
		rc.bad = append(rc.bad, msg)
		rc.mu.Unlock()
		http.Error(w, msg, http.StatusBadRequest)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		fail(r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type"))
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			fail(err.Error())
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		fail(err.Error())
		return
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(b, req); err != nil {
		fail(err.Error())
		return
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
	rc.mu.Lock()
	rc.requests = append(rc.requests, req)
	rc.mu.Unlock()
	select {
	case rc.got <- struct{}{}:
	default:
	}
}

type gotSpan struct {
	span     *tracepb.Span
	resource map[string]string
	scope    string
}

func (rc *receiver) spans() ([]gotSpan, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []gotSpan
	for _, req := range rc.requests {
		for _, rs := range req.ResourceSpans {
			res := strAttrs(rs.GetResource().GetAttributes())
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out = append(out, gotSpan{span: s, resource: res, scope: ss.GetScope().GetName()})
				}
			}
		}
	}
	return out, append([]string(nil), rc.bad...)
}

func strAttrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			if v.BoolValue {
				m[kv.Key] = "true"
			} else {
				m[kv.Key] = "false"
			}
		}
	}
	return m
}

// dlqOK is a DLQ writer that takes every record (this test publishes valid
// events only).
type dlqOK struct{}

func (dlqOK) DeadLetter(context.Context, kafka.Message, dlq.Entry) error { return nil }

// With OTEL_EXPORTER_OTLP_ENDPOINT set, Setup exports the spans of a
// Processor and a delivery.Publisher — built before Setup, with the
// global provider, as the worker builds them — over OTLP/HTTP to a local
// receiver, with their attributes, the parent of the record's
// traceparent, and the resource's service.name and service.version; the
// shutdown flushes them.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	clearEnv(t)
	rc := &receiver{got: make(chan struct{}, 1)}
	collector := httptest.NewServer(rc)
	defer collector.Close()
	t.Setenv(tracing.EnvEndpoint, collector.URL)

	simCtx, stopSim := context.WithCancel(context.Background())
	defer stopSim()
	_, base, err := sim.Start(simCtx, "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 4})
	defer hc.CloseIdleConnections()
	tokens := simcx.Tokens(t, hc, base, cxone.TokensConfig{})
	pub := delivery.New(delivery.Config{MaxRetries: 3}, cxone.NewClient(hc, base, 10*time.Second), tokens)
	proc := bridge.NewProcessor(pub, dlqOK{}, nil, bridge.ProcessorHooks{})

	stop, err := tracing.Setup(context.Background(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = stop()
		}
	}()
	msg := kafka.Message{Topic: "orders", Partition: 2, Offset: 7, Value: []byte(`{"eventType":"custom.user.action","source":"svc","timestamp":"2026-11-28T10:00:00Z","correlationId":"otlp-1","data":{}}`),
		Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !proc.Process(ctx, msg) {
		t.Fatal("not settled")
	}
	stopped = true
	if err := stop(); err != nil { // flushes
		t.Fatal(err)
	}

	spans, bad := rc.spans()
	if len(bad) > 0 {
		t.Fatalf("receiver refused requests: %v", bad)
	}
	var rec, att *gotSpan
	for i := range spans {
		switch spans[i].span.Name {
		case bridge.RecordSpan:
			rec = &spans[i]
		case delivery.AttemptSpan:
			att = &spans[i]
		}
	}
	if rec == nil || att == nil || len(spans) != 2 {
		t.Fatalf("received %d spans, want the record's and one attempt's", len(spans))
	}
	if got := rec.resource["service.name"]; got != "cxbridge" {
		t.Errorf("service.name %q", got)
	}
	if got := rec.resource["service.version"]; got != version.Get().Version {
		t.Errorf("service.version %q, want %q", got, version.Get().Version)
	}
	if rec.scope != tracing.Scope {
		t.Errorf("scope %q", rec.scope)
	}
	traceID := "4bf92f3577b34da6a3ce929d0e0e4736"
	if got := trace.TraceID(rec.span.TraceId).String(); got != traceID {
		t.Errorf("record span trace id %s, want the traceparent's", got)
	}
	if got := trace.SpanID(rec.span.ParentSpanId).String(); got != "00f067aa0ba902b7" {
		t.Errorf("record span parent %s", got)
	}
	if rec.span.Kind != tracepb.Span_SPAN_KIND_CONSUMER || att.span.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("kinds %v, %v", rec.span.Kind, att.span.Kind)
	}
	if string(att.span.ParentSpanId) != string(rec.span.SpanId) {
		t.Errorf("attempt span's parent is not the record span")
	}
	for k, want := range map[string]string{
		"messaging.system": "kafka", "messaging.destination.name": "orders", "messaging.destination.partition.id": "2",
		"messaging.kafka.offset": "7", bridge.AttrOutcome: "accepted", bridge.AttrTraceID: traceID,
		bridge.AttrCorrelationID: "otlp-1", bridge.AttrAttempts: "1",
	} {
		if got := strAttrs(rec.span.Attributes)[k]; got != want {
			t.Errorf("record span %s = %q, want %q", k, got, want)
		}
	}
	for k, want := range map[string]string{
		"http.response.status_code": "200", delivery.AttrAttempt: "1", delivery.AttrClass: "accepted", delivery.AttrNext: "accepted",
	} {
		if got := strAttrs(att.span.Attributes)[k]; got != want {
			t.Errorf("attempt span %s = %q, want %q", k, got, want)
		}
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the defaults.
func TestResourceHonoursTheEnvironment(t *testing.T) {
	clearEnv(t)
	res, err := tracing.Resource(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if got["service.name"] != "cxbridge" || got["service.version"] != version.Get().Version {
		t.Fatalf("defaults: %v", got)
	}
	t.Setenv("OTEL_SERVICE_NAME", "bridge-eu")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,service.version=9.9")
	if res, err = tracing.Resource(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = map[string]string{}
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if got["service.name"] != "bridge-eu" || got["deployment.environment.name"] != "prod" || got["service.version"] != "9.9" {
		t.Fatalf("with the environment: %v", got)
	}
}
