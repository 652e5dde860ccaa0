package transform_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/transform"
)

// Event, which checks the program's object without encoding and parsing
// it again, publishes what Apply's output decoded by event.Decode would
// (the same body, ids filled from the record alike) and refuses what it
// would refuse, with the same reason, field and message.
func TestEventAgreesWithApplyAndDecode(t *testing.T) {
	t.Parallel()
	const base = `eventType: "order.paid", source: "shop", timestamp: "2024-01-02T03:04:05Z"`
	programs := []string{
		readmeProgram,
		`{` + base + `}`, // no data, no ids: {} and ids from the record
		`{` + base + `, data: ., correlationId: "c-1", traceId: "t-1", extra: [1,2]}`,
		`{` + base + `, data: {n: 12345678901234567890, f: 1.50, e: 1e400, s: "<&>\u2028"}}`,
		`{` + base + `, data: {nan: nan, inf: infinite}}`, // gojq encodes them as null and a big number
		`{` + base + `, eventType: ("a" * 200)}`,          // too long
		`{` + base + `, eventType: ""}`,
		`{` + base + `, eventType: 7}`,
		`{` + base + `, source: null}`,
		`{` + base + `, source: "a\nb"}`, // a header value
		`{` + base + `, timestamp: $timestamp}`,
		`{` + base + `, timestamp: "2024-01-02 03:04:05"}`,
		`{` + base + `, correlationId: ("x" * 1025)}`,
		`{` + base + `, traceId: {}}`,
		`{` + base + `, data: [1]}`,
		`{` + base + `, data: null}`,
		`{` + base + `, data: "s"}`,
		`{` + base + `, data: {big: ("x" * 500001)}}`, // data over its limit
		`{eventType: "order.paid", timestamp: "2024-01-02T03:04:05Z"}`,
		`{` + base + `, eventType: ("/w==" | @base64d)}`,      // not UTF-8: U+FFFD
		`{` + base + `, source: ("c2hvcAA=" | @base64d)}`,     // a NUL byte
		`{` + base + `, eventType: ("//79" | @base64d)}`,      // three bad bytes: three U+FFFD
		`{` + base + `, eventType: ("////" * 43 | @base64d)}`, // 129 bad bytes: too long
		`{` + base + `, correlationId: ("////" * 342 | @base64d)}`,
		`{` + base + `, eventType: nan}`, // written as null
		`{` + base + `, data: nan}`,
		`{} | .eventType = .status`,
		`1`,
		`empty`,
	}
	value := []byte(sampleOrder)
	rec := event.Record{Topic: "orders", Partition: 3, Offset: 42, Headers: []event.Header{{Key: "X-Trace-ID", Value: []byte("from-header")}}}
	in := transform.Input{Record: rec, Key: []byte("k"), Timestamp: sampleTime}
	ctx := context.Background()
	for _, src := range programs {
		p := mustCompile(t, src)
		var wantEv *event.Event
		out, werr := p.Apply(ctx, value, in)
		if werr == nil {
			wantEv, werr = event.Decode(out, rec)
		}
		ev, err := p.Event(ctx, value, in)
		if werr != nil {
			if err == nil || err.Error() != werr.Error() || errors.Is(err, context.Canceled) {
				t.Errorf("%.60s: Event error %v, want %v", src, err, werr)
			}
			if !sameType(err, werr) {
				t.Errorf("%.60s: Event error is a %T, want %T", src, err, werr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%.60s: Event: %v; Apply and Decode made %s", src, err, out)
			continue
		}
		if ev.EventType != wantEv.EventType || ev.Source != wantEv.Source || ev.Timestamp != wantEv.Timestamp ||
			ev.CorrelationID != wantEv.CorrelationID || ev.TraceID != wantEv.TraceID || !bytes.Equal(ev.Data, wantEv.Data) {
			t.Errorf("%.60s: Event %+v, want %+v", src, ev, wantEv)
		}
		got, err1 := ev.Body()
		want, err2 := wantEv.Body()
		if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
			t.Errorf("%.60s: body\n got %s (%v)\nwant %s (%v)", src, got, err1, want, err2)
		}
	}
}

func sameType(a, b error) bool {
	_, ta := errors.AsType[*transform.Error](a)
	_, tb := errors.AsType[*transform.Error](b)
	_, ea := errors.AsType[*event.Error](a)
	_, eb := errors.AsType[*event.Error](b)
	return ta == tb && ea == eb
}

// Members the contract does not name are dropped whatever their size: the
// object is never written out whole, so only data's and the publish body's
// limits apply.
func TestEventDropsLargeUnknownMembers(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, `{eventType: "order.paid", source: "shop", timestamp: "2024-01-02T03:04:05Z", junk: ("x" * 1100000)}`)
	ev, err := p.Event(context.Background(), []byte(sampleOrder), sampleInput())
	if err != nil {
		t.Fatal(err)
	}
	if body, err := ev.Body(); err != nil || len(body) > 1000 {
		t.Fatalf("body of %d bytes, %v", len(body), err)
	}
}
