package event_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/cxbridge/cxbridge/internal/event"
)

const (
	noIDs   = `{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05Z"}`
	withIDs = `{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05Z","correlationId":"ev-corr","traceId":"ev-trace"}`

	// The ids derived for orders/3/42: UUID v5 of "orders/3/42" in the
	// package's namespaces. Pinned: a change would give every record in
	// flight, in the DLQ or being replayed a new identity.
	derivedCorr  = "c6f88c52-fe1f-57e3-99a8-2400374c6c3f"
	derivedTrace = "41eb85ed-6df9-59cb-b7c2-74639f1b331d"

	tpID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tp   = "00-" + tpID + "-00f067aa0ba902b7-01"
)

var rec = event.Record{Topic: "orders", Partition: 3, Offset: 42}

func hdr(kv ...string) []event.Header {
	hs := make([]event.Header, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, event.Header{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return hs
}

// Decode takes correlationId and traceId from the event when it has them;
// else from the record headers (X-Correlation-ID; traceparent, then
// X-Trace-ID), ignoring values that cannot be used as ids; else derives
// them from the record's coordinates.
func TestDecodeIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		value     string
		headers   []event.Header
		wantCorr  string
		wantTrace string
	}{
		{"event ids", withIDs, nil, "ev-corr", "ev-trace"},
		{"event ids win over headers", withIDs,
			hdr("X-Correlation-ID", "h-corr", "traceparent", tp, "X-Trace-ID", "h-trace"), "ev-corr", "ev-trace"},
		{"no ids, no headers: derived", noIDs, nil, derivedCorr, derivedTrace},
		{"empty ids in the event count as absent",
			`{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05Z","correlationId":"","traceId":""}`,
			hdr("X-Correlation-ID", "h-corr", "X-Trace-ID", "h-trace"), "h-corr", "h-trace"},
		{"event correlationId, header trace",
			`{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05Z","correlationId":"ev-corr"}`,
			hdr("X-Correlation-ID", "h-corr", "traceparent", tp), "ev-corr", tpID},
		{"event traceId, header correlation",
			`{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05Z","traceId":"ev-trace"}`,
			hdr("X-Correlation-ID", "h-corr", "traceparent", tp), "h-corr", "ev-trace"},

		// X-Correlation-ID
		{"X-Correlation-ID", noIDs, hdr("X-Correlation-ID", "h-corr"), "h-corr", derivedTrace},
		{"x-correlation-id lower case", noIDs, hdr("x-correlation-id", "h-corr"), "h-corr", derivedTrace},
		{"X-CORRELATION-ID upper case", noIDs, hdr("X-CORRELATION-ID", "h-corr"), "h-corr", derivedTrace},
		{"last X-Correlation-ID wins", noIDs, hdr("X-Correlation-ID", "first", "x-correlation-id", "last"), "last", derivedTrace},
		{"surrounding spaces trimmed", noIDs, hdr("X-Correlation-ID", "  h-corr \t"), "h-corr", derivedTrace},
		{"trailing CR LF trimmed like other space", noIDs, hdr("X-Correlation-ID", "h-corr\r\n"), "h-corr", derivedTrace},
		{"tab inside kept", noIDs, hdr("X-Correlation-ID", "a\tb"), "a\tb", derivedTrace},
		{"non-ASCII kept", noIDs, hdr("X-Correlation-ID", "bestellung-é"), "bestellung-é", derivedTrace},
		{"1024 bytes kept", noIDs, hdr("X-Correlation-ID", strings.Repeat("c", 1024)), strings.Repeat("c", 1024), derivedTrace},
		{"empty header ignored", noIDs, hdr("X-Correlation-ID", ""), derivedCorr, derivedTrace},
		{"blank header ignored", noIDs, hdr("X-Correlation-ID", "   "), derivedCorr, derivedTrace},
		{"newline ignored", noIDs, hdr("X-Correlation-ID", "a\nb"), derivedCorr, derivedTrace},
		{"CR LF injection ignored", noIDs, hdr("X-Correlation-ID", "a\r\nX-Evil: 1"), derivedCorr, derivedTrace},
		{"NUL ignored", noIDs, hdr("X-Correlation-ID", "a\x00b"), derivedCorr, derivedTrace},
		{"DEL ignored", noIDs, hdr("X-Correlation-ID", "a\x7fb"), derivedCorr, derivedTrace},
		{"ESC ignored", noIDs, hdr("X-Correlation-ID", "\x1b[31m"), derivedCorr, derivedTrace},
		{"invalid UTF-8 ignored", noIDs, hdr("X-Correlation-ID", "a\xffb"), derivedCorr, derivedTrace},
		{"over 1024 bytes ignored", noIDs, hdr("X-Correlation-ID", strings.Repeat("c", 1025)), derivedCorr, derivedTrace},
		{"unusable last header is not replaced by an earlier one", noIDs,
			hdr("X-Correlation-ID", "good", "X-Correlation-ID", "b\nad"), derivedCorr, derivedTrace},
		{"other headers ignored", noIDs, hdr("Correlation-ID", "x", "X-Correlation", "y", "X-Request-ID", "z"), derivedCorr, derivedTrace},

		// traceparent, then X-Trace-ID
		{"traceparent", noIDs, hdr("traceparent", tp), derivedCorr, tpID},
		{"Traceparent any case", noIDs, hdr("TraceParent", tp), derivedCorr, tpID},
		{"traceparent wins over X-Trace-ID", noIDs, hdr("X-Trace-ID", "h-trace", "traceparent", tp), derivedCorr, tpID},
		{"traceparent with spaces", noIDs, hdr("traceparent", " "+tp+" "), derivedCorr, tpID},
		{"traceparent of a later version with more fields", noIDs,
			hdr("traceparent", "cc-"+tpID+"-00f067aa0ba902b7-01-what-the-future-holds"), derivedCorr, tpID},
		{"X-Trace-ID", noIDs, hdr("X-Trace-ID", "h-trace"), derivedCorr, "h-trace"},
		{"x-trace-id lower case", noIDs, hdr("x-trace-id", "h-trace"), derivedCorr, "h-trace"},
		{"X-Trace-ID with control characters ignored", noIDs, hdr("X-Trace-ID", "h\r\ntrace"), derivedCorr, derivedTrace},
		{"malformed traceparent and bad X-Trace-ID: derived", noIDs,
			hdr("traceparent", "garbage", "X-Trace-ID", "\x00"), derivedCorr, derivedTrace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := event.Decode([]byte(tt.value), event.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Headers: tt.headers})
			if err != nil {
				t.Fatal(err)
			}
			if ev.CorrelationID != tt.wantCorr {
				t.Errorf("correlationId = %q, want %q", ev.CorrelationID, tt.wantCorr)
			}
			if ev.TraceID != tt.wantTrace {
				t.Errorf("traceId = %q, want %q", ev.TraceID, tt.wantTrace)
			}
		})
	}
}

// A malformed traceparent, or one with an all-zero trace id or parent id,
// is ignored (W3C Trace Context: the receiver starts a new trace): the
// trace id then comes from X-Trace-ID, else it is derived.
func TestDecodeIgnoresMalformedTraceparent(t *testing.T) {
	t.Parallel()
	const parent, flags = "00f067aa0ba902b7", "01"
	bad := []struct{ name, value string }{
		{"empty", ""},
		{"garbage", "not-a-traceparent"},
		{"trace id only", tpID},
		{"all-zero trace id", "00-" + strings.Repeat("0", 32) + "-" + parent + "-" + flags},
		{"all-zero parent id", "00-" + tpID + "-" + strings.Repeat("0", 16) + "-" + flags},
		{"upper-case hex", "00-" + strings.ToUpper(tpID) + "-" + parent + "-" + flags},
		{"non-hex trace id", "00-" + "g" + tpID[1:] + "-" + parent + "-" + flags},
		{"non-hex parent id", "00-" + tpID + "-" + "zzzzzzzzzzzzzzzz" + "-" + flags},
		{"non-hex flags", "00-" + tpID + "-" + parent + "-xx"},
		{"short trace id", "00-" + tpID[1:] + "-" + parent + "-" + flags},
		{"long trace id", "00-" + tpID + "0-" + parent + "-" + flags},
		{"short parent id", "00-" + tpID + "-" + parent[1:] + "-" + flags},
		{"no flags", "00-" + tpID + "-" + parent},
		{"underscores", "00_" + tpID + "_" + parent + "_" + flags},
		{"version ff", "ff-" + tpID + "-" + parent + "-" + flags},
		{"non-hex version", "0x-" + tpID + "-" + parent + "-" + flags},
		{"version 00 with more fields", "00-" + tpID + "-" + parent + "-" + flags + "-extra"},
		{"later version, no dash after flags", "01-" + tpID + "-" + parent + "-" + flags + "extra"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			r := rec
			r.Headers = hdr("traceparent", b.value)
			ev, err := event.Decode([]byte(noIDs), r)
			if err != nil {
				t.Fatal(err)
			}
			if ev.TraceID != derivedTrace {
				t.Errorf("traceId = %q, want the derived %q", ev.TraceID, derivedTrace)
			}
			r.Headers = append(r.Headers, hdr("X-Trace-ID", "fallback")...)
			if ev, err = event.Decode([]byte(noIDs), r); err != nil {
				t.Fatal(err)
			}
			if ev.TraceID != "fallback" {
				t.Errorf("with X-Trace-ID: traceId = %q, want fallback", ev.TraceID)
			}
		})
	}
}

// Invariant 6 (stable identity): a record without ids gets the same ids on
// every decode — every attempt, restart, rebalance — and they are UUIDs
// that depend on the record's coordinates only. Random ids fail this test.
func TestDerivedIDsAreStable(t *testing.T) {
	t.Parallel()
	first, err := event.Decode([]byte(noIDs), rec)
	if err != nil {
		t.Fatal(err)
	}
	if first.CorrelationID != derivedCorr || first.TraceID != derivedTrace {
		t.Fatalf("ids = %s / %s, want the pinned %s / %s", first.CorrelationID, first.TraceID, derivedCorr, derivedTrace)
	}
	for i := 0; i < 3; i++ {
		// Same coordinates, different value and unusable headers: same ids.
		r := rec
		r.Headers = hdr("X-Correlation-ID", "b\nad", "traceparent", "junk")
		again, err := event.Decode([]byte(`{"eventType":"other","source":"x","timestamp":"2025-06-07T08:09:10Z","data":{"n":1}}`), r)
		if err != nil {
			t.Fatal(err)
		}
		if again.CorrelationID != first.CorrelationID || again.TraceID != first.TraceID {
			t.Fatalf("decode %d gave %s / %s, first gave %s / %s", i, again.CorrelationID, again.TraceID, first.CorrelationID, first.TraceID)
		}
	}
	if got := event.DerivedCorrelationID(rec); got != first.CorrelationID {
		t.Errorf("DerivedCorrelationID = %s, Decode gave %s", got, first.CorrelationID)
	}
	if first.CorrelationID == first.TraceID {
		t.Errorf("correlation and trace ids are both %s; they come from different namespaces", first.TraceID)
	}
	for _, id := range []string{first.CorrelationID, first.TraceID} {
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("%q is not a UUID: %v", id, err)
		}
		if u.Version() != 5 || u.Variant() != uuid.RFC4122 || u.String() != id {
			t.Errorf("%s: version %d variant %v, want a canonical RFC 4122 v5 UUID", id, u.Version(), u.Variant())
		}
	}
}

// Different records get different derived ids, including records whose
// coordinates would collide if they were joined without separators.
func TestDerivedIDsDiffer(t *testing.T) {
	t.Parallel()
	records := []event.Record{
		rec,
		{Topic: "orders", Partition: 3, Offset: 43},
		{Topic: "orders", Partition: 4, Offset: 42},
		{Topic: "orders2", Partition: 3, Offset: 42},
		{Topic: "orders", Partition: 34, Offset: 2},
		{Topic: "orders", Partition: 0, Offset: 0},
		{Topic: "orders", Partition: 0, Offset: -1},
		{Topic: "", Partition: 0, Offset: 0},
	}
	seen := map[string]event.Record{}
	for _, r := range records {
		ev, err := event.Decode([]byte(noIDs), r)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{ev.CorrelationID, ev.TraceID} {
			if other, dup := seen[id]; dup {
				t.Errorf("records %+v and %+v share id %s", r, other, id)
			}
			seen[id] = r
		}
		if ev.CorrelationID != event.DerivedCorrelationID(r) {
			t.Errorf("%+v: Decode and DerivedCorrelationID disagree", r)
		}
	}
}

// A dead-lettered record replayed to the input topic lands at new
// coordinates; it keeps its identity through the X-Correlation-ID header
// carrying the id derived for the original record.
func TestReplayKeepsDerivedCorrelationID(t *testing.T) {
	t.Parallel()
	orig, err := event.Decode([]byte(noIDs), rec)
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := event.Decode([]byte(noIDs), event.Record{Topic: "orders", Partition: 0, Offset: 9_000,
		Headers: hdr(event.HeaderCorrelationID, orig.CorrelationID, event.HeaderTraceID, orig.TraceID)})
	if err != nil {
		t.Fatal(err)
	}
	if replayed.CorrelationID != orig.CorrelationID || replayed.TraceID != orig.TraceID {
		t.Errorf("replay ids %s / %s, want %s / %s", replayed.CorrelationID, replayed.TraceID, orig.CorrelationID, orig.TraceID)
	}
}

// Decode fails exactly as Parse does, and fills nothing.
func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range fileCases(t) {
		if tc.Reason == "" {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			ev, err := event.Decode(tc.Value, event.Record{Topic: "orders", Headers: hdr("X-Correlation-ID", "h")})
			if ev != nil {
				t.Errorf("Decode returned an event with its error: %+v", ev)
			}
			var e *event.Error
			if !errors.As(err, &e) || e.Reason != tc.Reason || e.Field != tc.Field {
				t.Errorf("Decode error = %v, want reason %s field %q", err, tc.Reason, tc.Field)
			}
		})
	}
}

// A replayed DLQ record keeps the ids the DLQ headers carry, though its
// offset is new (invariant 6); X-Correlation-ID still wins over them.
func TestRecordIDsFromDLQHeaders(t *testing.T) {
	t.Parallel()
	orig := event.Record{Topic: "cxone.events", Partition: 2, Offset: 41}
	corr, trace := event.RecordIDs(orig)
	replayed := event.Record{Topic: "cxone.events", Partition: 5, Offset: 9000, Headers: []event.Header{
		{Key: event.HeaderDLQCorrelationID, Value: []byte(corr)},
		{Key: event.HeaderDLQTraceID, Value: []byte(trace)},
	}}
	if c, tr := event.RecordIDs(replayed); c != corr || tr != trace {
		t.Fatalf("replay ids %s %s, want %s %s", c, tr, corr, trace)
	}
	ev, err := event.Decode([]byte(`{"eventType":"a","source":"b","timestamp":"2026-01-02T03:04:05Z"}`), replayed)
	if err != nil || ev.CorrelationID != corr || ev.TraceID != trace {
		t.Fatalf("Decode of a replay: %+v %v", ev, err)
	}
	replayed.Headers = append(replayed.Headers, event.Header{Key: event.HeaderCorrelationID, Value: []byte("explicit")})
	if c, _ := event.RecordIDs(replayed); c != "explicit" {
		t.Fatalf("X-Correlation-ID should win, got %s", c)
	}
}
