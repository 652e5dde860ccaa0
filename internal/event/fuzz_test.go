package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cxbridge/cxbridge/internal/event"
)

// FuzzDecode checks invariant 7 (bad input never stops the line) at the
// decoding step: whatever the record holds, Decode does not panic; it
// either fails with an *Error carrying one of the three reasons, or gives
// an event with both ids whose body Parse accepts and reads back to the
// same event, and decoding again gives the same event.
func FuzzDecode(f *testing.F) {
	for _, tc := range fileCases(f) {
		f.Add(tc.Value, "", "", int64(0))
	}
	for _, tc := range generatedCases() {
		if len(tc.Value) <= 64<<10 { // the megabyte cases would only slow the fuzzer down
			f.Add(tc.Value, "", "", int64(1))
		}
	}
	f.Add([]byte(noIDs), "h-corr", tp, int64(7))
	f.Add([]byte(noIDs), "a\r\nb", "00-"+tpID+"-0000000000000000-01", int64(-1))
	f.Add([]byte(withIDs), "", "ff-"+tpID+"-00f067aa0ba902b7-01", int64(1<<62))

	f.Fuzz(func(t *testing.T, value []byte, corrHeader, traceparent string, offset int64) {
		r := event.Record{Topic: "orders", Partition: 1, Offset: offset, Headers: []event.Header{
			{Key: event.HeaderCorrelationID, Value: []byte(corrHeader)},
			{Key: event.HeaderTraceparent, Value: []byte(traceparent)},
		}}
		ev, err := event.Decode(value, r)
		if err != nil {
			var e *event.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is a %T, want *event.Error", err, err)
			}
			switch e.Reason {
			case event.ReasonInvalidJSON, event.ReasonInvalidEvent, event.ReasonTooLarge:
			default:
				t.Fatalf("error %v has reason %q", err, e.Reason)
			}
			if ev != nil {
				t.Fatalf("Decode returned an event with its error")
			}
			// The ids a dead letter gets: never empty, always safe as
			// header values, the same every time.
			corr, trace := event.BadRecordIDs(value, r)
			if corr == "" || trace == "" || strings.ContainsAny(corr+trace, "\r\n\x00") {
				t.Fatalf("BadRecordIDs = %q, %q", corr, trace)
			}
			if c2, t2 := event.BadRecordIDs(value, r); c2 != corr || t2 != trace {
				t.Fatalf("BadRecordIDs not stable: %q %q then %q %q", corr, trace, c2, t2)
			}
			return
		}
		if ev.CorrelationID == "" || ev.TraceID == "" {
			t.Fatalf("Decode left an id empty: %+v", ev)
		}
		body, err := ev.Body()
		if err != nil {
			t.Fatalf("Body of an accepted event: %v", err)
		}
		back, err := event.Parse(body)
		if err != nil {
			t.Fatalf("Parse(Body()) = %v\nvalue %q\nbody  %q", err, value, body)
		}
		if !reflect.DeepEqual(back, ev) {
			t.Fatalf("Parse(Body()) = %+v\nwant %+v", back, ev)
		}
		again, err := event.Decode(value, r)
		if err != nil || !reflect.DeepEqual(again, ev) {
			t.Fatalf("second Decode = %+v, %v; first %+v", again, err, ev)
		}
	})
}

// FuzzParseFields puts arbitrary strings into the fields of an otherwise
// well-formed event, so the fuzzer explores the field rules rather than
// the JSON grammar, and checks Parse against the contract restated here
// independently: the first field that breaks a rule is the one reported.
func FuzzParseFields(f *testing.F) {
	f.Add("order.created", "shop", "2024-01-02T03:04:05Z", "", "", []byte(`{"a":1}`))
	f.Add("é", "店舗\t1", "2024-01-02T03:04:05.123456789Z", "c\n", "t", []byte(` { "a" : [ ] } `))
	f.Add("", "s", "2024-01-02T03:04:05+02:00", "c", "\x7f", []byte(`[]`))
	f.Add("t", "\u2028", "2024-01-02T03:04Z", "\xff", "t", []byte(`null`))
	f.Add(strings.Repeat("\xff", 128), "s", "2024-01-02T03:04:05Z", "\xff\xfe", "t", []byte(`{}`))

	f.Fuzz(func(t *testing.T, eventType, source, timestamp, corr, trace string, data []byte) {
		quote := func(s string) string {
			b, _ := json.Marshal(s)
			return string(b)
		}
		// json.Marshal turns each invalid UTF-8 byte into U+FFFD: the
		// decoded field values are these.
		decoded := func(s string) string {
			var out string
			if err := json.Unmarshal([]byte(quote(s)), &out); err != nil {
				t.Fatal(err)
			}
			return out
		}
		eventType, source, timestamp = decoded(eventType), decoded(source), decoded(timestamp)
		corr, trace = decoded(corr), decoded(trace)
		value := `{"eventType":` + quote(eventType) + `,"source":` + quote(source) + `,"timestamp":` + quote(timestamp) +
			`,"correlationId":` + quote(corr) + `,"traceId":` + quote(trace)
		hasData := json.Valid(data)
		if hasData {
			value += `,"data":` + string(data)
		}
		value += "}"

		wantReason, wantField := contractVerdict(eventType, source, timestamp, corr, trace, data, hasData)
		if !utf8.ValidString(value) {
			// json.Valid lets invalid UTF-8 through in data's strings; a
			// record that is not UTF-8 is not JSON text (RFC 8259 § 8.1),
			// whatever its fields say.
			wantReason, wantField = event.ReasonInvalidJSON, ""
		}
		if len(value) > event.MaxBodyBytes {
			wantReason, wantField = event.ReasonTooLarge, ""
		}
		ev, err := event.Parse([]byte(value))
		if wantReason == "" {
			if err != nil {
				t.Fatalf("Parse(%q) = %v, want accepted", value, err)
			}
			if ev.EventType != eventType || ev.Source != source || ev.Timestamp != timestamp || ev.CorrelationID != corr || ev.TraceID != trace {
				t.Fatalf("Parse(%q) = %+v", value, ev)
			}
			return
		}
		var e *event.Error
		if !errors.As(err, &e) || e.Reason != wantReason || e.Field != wantField {
			t.Fatalf("Parse(%q) = %v, want reason %s field %q", value, err, wantReason, wantField)
		}
	})
}

var contractTimestamp = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$`)

// contractVerdict is the contract's verdict on an event with these
// (decoded) fields: the reason and the first field at fault.
func contractVerdict(eventType, source, timestamp, corr, trace string, data []byte, hasData bool) (event.Reason, string) {
	chars := utf8.RuneCountInString
	headerOK := func(s string) bool {
		return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f })
	}
	switch {
	case chars(eventType) < 1 || chars(eventType) > 128:
		return event.ReasonInvalidEvent, "eventType"
	case chars(source) < 1 || chars(source) > 256 || !headerOK(source):
		return event.ReasonInvalidEvent, "source"
	case !contractTimestamp.MatchString(timestamp):
		return event.ReasonInvalidEvent, "timestamp"
	case chars(corr) > 1024 || !headerOK(corr):
		return event.ReasonInvalidEvent, "correlationId"
	case chars(trace) > 1024 || !headerOK(trace):
		return event.ReasonInvalidEvent, "traceId"
	}
	if hasData {
		trimmed := bytes.TrimLeft(data, " \t\r\n")
		if trimmed[0] != '{' {
			return event.ReasonInvalidEvent, "data"
		}
		var buf bytes.Buffer
		_ = json.Compact(&buf, data)
		if buf.Len() > event.MaxDataBytes {
			return event.ReasonTooLarge, "data"
		}
	}
	return "", ""
}
