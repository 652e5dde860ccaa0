package tracing

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
)

type traceIDKey struct{}

// WithTraceID returns ctx carrying id as the trace id of a root span
// started in it by a provider from NewProvider. A span with a parent keeps
// its parent's trace id; so does any span of another provider.
func WithTraceID(ctx context.Context, id trace.TraceID) context.Context {
	if !id.IsValid() {
		return ctx
	}
	return context.WithValue(ctx, traceIDKey{}, id)
}

// TraceIDOf returns the W3C trace id that an event's trace id stands for:
// itself when it is 32 hex digits, its 32 hex digits when it is a UUID (as
// the ids derived from a record's coordinates are); not ok for any other
// id, or all zeros.
func TraceIDOf(id string) (trace.TraceID, bool) {
	var t trace.TraceID
	var digits [32]byte
	switch len(id) {
	case 32:
		copy(digits[:], id)
	case 36:
		if id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
			return t, false
		}
		copy(digits[:], id[0:8]+id[9:13]+id[14:18]+id[19:23]+id[24:36])
	default:
		return t, false
	}
	if _, err := hex.Decode(t[:], digits[:]); err != nil {
		return trace.TraceID{}, false
	}
	return t, t.IsValid()
}

// idGenerator makes random ids, but a root span's trace id is the one
// WithTraceID put in its context, if any.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(traceIDKey{}).(trace.TraceID)
	if !ok {
		for !tid.IsValid() {
			binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
			binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
		}
	}
	return tid, newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}
