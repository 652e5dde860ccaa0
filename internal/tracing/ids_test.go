package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestTraceIDOf(t *testing.T) {
	cases := []struct {
		id   string
		want string // "" = not ok
	}{
		{"4bf92f3577b34da6a3ce929d0e0e4736", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"8531c8b5-0684-55b3-adcf-be269195fe6e", "8531c8b5068455b3adcfbe269195fe6e"},
		{"4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"00000000000000000000000000000000", ""},
		{"00000000-0000-0000-0000-000000000000", ""},
		{"8531c8b5x0684-55b3-adcf-be269195fe6e", ""},
		{"4bf92f3577b34da6a3ce929d0e0e473g", ""},
		{"trace-123", ""},
		{"", ""},
	}
	for _, tc := range cases {
		got, ok := TraceIDOf(tc.id)
		if (tc.want != "") != ok || ok && got.String() != tc.want {
			t.Errorf("TraceIDOf(%q) = %s, %v; want %q", tc.id, got, ok, tc.want)
		}
	}
}

// A root span takes the trace id of its context; a child keeps its
// parent's; without one, ids are random and valid.
func TestIDGenerator(t *testing.T) {
	tp := NewProvider()
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("t")
	id, _ := TraceIDOf("8531c8b5-0684-55b3-adcf-be269195fe6e")
	ctx, root := tr.Start(WithTraceID(context.Background(), id), "root")
	if root.SpanContext().TraceID() != id {
		t.Fatalf("root trace id %s, want %s", root.SpanContext().TraceID(), id)
	}
	_, child := tr.Start(WithTraceID(ctx, trace.TraceID{1}), "child")
	if child.SpanContext().TraceID() != id || child.SpanContext().SpanID() == root.SpanContext().SpanID() {
		t.Fatalf("child %v of root %v", child.SpanContext(), root.SpanContext())
	}
	_, a := tr.Start(context.Background(), "a")
	_, b := tr.Start(context.Background(), "b")
	if !a.SpanContext().IsValid() || a.SpanContext().TraceID() == b.SpanContext().TraceID() {
		t.Fatalf("random ids: %v %v", a.SpanContext(), b.SpanContext())
	}
}
