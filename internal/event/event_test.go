package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/event"
)

// Every sample event gets the outcome its manifest row states: valid ones
// parse to the expected fields, invalid ones fail with the expected reason
// and field, and the message names the field and the rule it broke.
func TestParseCases(t *testing.T) {
	t.Parallel()
	for _, tc := range allCases(t) {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			ev, err := event.Parse(tc.Value)
			if tc.Reason != "" {
				checkError(t, err, tc.Reason, tc.Field, tc.Msg)
				if ev != nil {
					t.Errorf("Parse returned an event with its error: %+v", ev)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: unexpected error %v", err)
			}
			checkWant(t, ev, tc.Want)
			if !json.Valid(ev.Data) || ev.Data[0] != '{' {
				t.Errorf("data = %.80s, want a JSON object", ev.Data)
			}
			if compact := compactJSON(t, ev.Data); !bytes.Equal(compact, ev.Data) {
				t.Errorf("data is not compact: %.80s", ev.Data)
			}
			if len(ev.Data) > event.MaxDataBytes {
				t.Errorf("data is %d bytes, over the limit", len(ev.Data))
			}
		})
	}
}

// checkError asserts that err is an *Error with the given reason and field,
// and that its text names the field and the rule.
func checkError(t *testing.T, err error, reason event.Reason, field, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse accepted the value, want %s (field %q)", reason, field)
	}
	var e *event.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is a %T, want *event.Error", err, err)
	}
	if e.Reason != reason || e.Field != field {
		t.Errorf("got reason %q field %q (%v), want reason %q field %q", e.Reason, e.Field, err, reason, field)
	}
	if !strings.Contains(e.Msg, msg) {
		t.Errorf("message %q does not contain %q", e.Msg, msg)
	}
	text := err.Error()
	if !strings.HasPrefix(text, "event: ") {
		t.Errorf("error %q lacks the event: prefix", text)
	}
	if field != "" && !strings.Contains(text, field+": ") {
		t.Errorf("error %q does not name the field %s", text, field)
	}
	if len(text) > 400 {
		t.Errorf("error text is %d bytes; it must stay short enough for a DLQ header: %.100s…", len(text), text)
	}
}

// checkWant compares the fields listed in want with the event.
func checkWant(t *testing.T, ev *event.Event, want map[string]json.RawMessage) {
	t.Helper()
	got := map[string]string{
		"eventType":     ev.EventType,
		"source":        ev.Source,
		"timestamp":     ev.Timestamp,
		"correlationId": ev.CorrelationID,
		"traceId":       ev.TraceID,
	}
	for name, raw := range want {
		if name == "data" {
			if w := compactJSON(t, raw); !bytes.Equal(ev.Data, w) {
				t.Errorf("data = %s, want %s", ev.Data, w)
			}
			continue
		}
		g, ok := got[name]
		if !ok {
			t.Fatalf("want names unknown field %q", name)
		}
		var w string
		if err := json.Unmarshal(raw, &w); err != nil {
			t.Fatalf("want %s: %v", name, err)
		}
		if g != w {
			t.Errorf("%s = %q, want %q", name, g, w)
		}
	}
}

func compactJSON(t testing.TB, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("compact %.80s: %v", raw, err)
	}
	return buf.Bytes()
}

// The body of every valid event holds exactly the six contract fields
// (unknown ones are dropped) and parses back to an equal event.
func TestBodyRoundTrip(t *testing.T) {
	t.Parallel()
	want := []string{"correlationId", "data", "eventType", "source", "timestamp", "traceId"}
	for _, tc := range allCases(t) {
		if tc.Reason != "" {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			ev, err := event.Parse(tc.Value)
			if err != nil {
				t.Fatal(err)
			}
			body, err := ev.Body()
			if err != nil {
				t.Fatalf("Body: %v", err)
			}
			if keys := bodyKeys(t, body); !reflect.DeepEqual(keys, want) {
				t.Errorf("body keys = %v, want %v", keys, want)
			}
			again, err := event.Parse(body)
			if err != nil {
				t.Fatalf("Parse(Body()) = %v; body %.200s", err, body)
			}
			if !reflect.DeepEqual(again, ev) {
				t.Errorf("Parse(Body()) = %+v, want %+v", again, ev)
			}
			body2, err := again.Body()
			if err != nil || !bytes.Equal(body2, body) {
				t.Errorf("Body is not stable: %.200s then %.200s (%v)", body, body2, err)
			}
		})
	}
}

// The body is exactly the contract's fields in a fixed order, compact, with
// <, > and & sent as they are; data is passed on as written, only compacted.
func TestBodyGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "html characters are not escaped",
			in:   `{"eventType":"a<b>&c","source":"s&s","timestamp":"2024-01-02T03:04:05Z","data":{"html":"<b>Tom & Jerry</b>","lt":"\u003c"}}`,
			want: `{"eventType":"a<b>&c","source":"s&s","timestamp":"2024-01-02T03:04:05Z","correlationId":"","traceId":"","data":{"html":"<b>Tom & Jerry</b>","lt":"\u003c"}}`,
		},
		{
			name: "unknown fields dropped and data compacted",
			in: `{ "z": 1, "eventType" : "t", "Source": "x", "source":"s", "timestamp":"2024-01-02T03:04:05.5Z",
			      "correlationId":"c", "traceId":"t", "data": { "b" : [ 1, 2 ],
			      "a" : { } }, "extra": {"nested": true} }`,
			want: `{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05.5Z","correlationId":"c","traceId":"t","data":{"b":[1,2],"a":{}}}`,
		},
		{
			name: "absent data becomes an empty object",
			in:   `{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05Z"}`,
			want: `{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05Z","correlationId":"","traceId":"","data":{}}`,
		},
		{
			name: "non-ASCII is sent as UTF-8",
			in:   `{"eventType":"\u00e9v\u00e9nement","source":"店舗","timestamp":"2024-01-02T03:04:05Z","data":{"名前":"José"}}`,
			want: `{"eventType":"événement","source":"店舗","timestamp":"2024-01-02T03:04:05Z","correlationId":"","traceId":"","data":{"名前":"José"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := event.Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			body, err := ev.Body()
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tt.want {
				t.Errorf("Body() =\n%s\nwant\n%s", body, tt.want)
			}
		})
	}
}

// An Event built by hand (not by Parse) with no Data still gets a body the
// contract accepts: data {} rather than null.
func TestBodyEmptyData(t *testing.T) {
	t.Parallel()
	for _, data := range []json.RawMessage{nil, {}} {
		ev := &event.Event{EventType: "t", Source: "s", Timestamp: "2024-01-02T03:04:05Z", CorrelationID: "c", TraceID: "t"}
		ev.Data = data
		body, err := ev.Body()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(body, []byte(`"data":{}}`)) {
			t.Errorf("Body() = %s, want data {}", body)
		}
		if _, err := event.Parse(body); err != nil {
			t.Errorf("Parse(Body()) = %v", err)
		}
		if len(ev.Data) != 0 {
			t.Errorf("Body changed the event's Data to %s", ev.Data)
		}
	}
}

// A hand-built Event whose body would pass 1 MiB fails with too_large.
func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	ev := &event.Event{EventType: "t", Source: "s", Timestamp: "2024-01-02T03:04:05Z",
		Data: json.RawMessage(`{"s":"` + strings.Repeat("x", event.MaxBodyBytes) + `"}`)}
	_, err := ev.Body()
	var e *event.Error
	if !errors.As(err, &e) || e.Reason != event.ReasonTooLarge || e.Field != "" {
		t.Fatalf("Body() error = %v, want *Error too_large", err)
	}
}

// The parsed event does not alias the input: a consumer may reuse its
// fetch buffer once Parse returns.
func TestParseDoesNotAliasInput(t *testing.T) {
	t.Parallel()
	in := []byte(`{"eventType":"t","source":"s","timestamp":"2024-01-02T03:04:05Z","correlationId":"c","data":{"k":"v"}}`)
	ev, err := event.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := ev.Body()
	for i := range in {
		in[i] = 'X'
	}
	after, _ := ev.Body()
	if !bytes.Equal(before, after) {
		t.Errorf("event changed with its input: %s, then %s", before, after)
	}
}

// Error text: "event: <field>: <msg>", or "event: <msg>" for the whole value.
func TestErrorString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *event.Error
		want string
	}{
		{"with field", &event.Error{Reason: event.ReasonInvalidEvent, Field: "source", Msg: "is required"}, "event: source: is required"},
		{"whole value", &event.Error{Reason: event.ReasonInvalidJSON, Msg: "not valid UTF-8"}, "event: not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

// An over-long timestamp is quoted in the error, cut short: error text ends
// up in DLQ headers and logs.
func TestTimestampErrorIsTruncated(t *testing.T) {
	t.Parallel()
	ts := strings.Repeat("9", 10_000)
	_, err := event.Parse([]byte(`{"eventType":"t","source":"s","timestamp":"` + ts + `"}`))
	checkError(t, err, event.ReasonInvalidEvent, "timestamp", "ISO 8601 UTC")
	if len(err.Error()) > 300 {
		t.Errorf("error is %d bytes long", len(err.Error()))
	}
}
