package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/event"
)

// FromObject judges every sample event that is a JSON object as Parse
// judges its body: the same reason, field and message for an invalid one,
// the same fields and data for a valid one. Only the checks of the body as
// bytes are Parse's alone (its size, UTF-8 and syntax): an object has no
// body yet, and a too large publish body is refused when it is encoded.
func TestFromObjectAgreesWithParse(t *testing.T) {
	t.Parallel()
	n := 0
	for _, tc := range allCases(t) {
		members, ok := decodeObject(tc.Value)
		if !ok {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			want, werr := event.Parse(tc.Value)
			if e, ok := errors.AsType[*event.Error](werr); ok && e.Field == "" {
				t.Skipf("a check of the body as bytes: %v", werr)
			}
			n++
			got, err := event.FromObject(members, encodeCompact)
			if werr != nil {
				we := werr.(*event.Error)
				checkError(t, err, we.Reason, we.Field, we.Msg)
				return
			}
			if err != nil {
				t.Fatalf("FromObject: %v; Parse accepted the event", err)
			}
			if got.EventType != want.EventType || got.Source != want.Source || got.Timestamp != want.Timestamp ||
				got.CorrelationID != want.CorrelationID || got.TraceID != want.TraceID {
				t.Errorf("FromObject = %+v, Parse = %+v", got, want)
			}
			if !reflect.DeepEqual(decodeAny(t, got.Data), decodeAny(t, want.Data)) {
				t.Errorf("data = %.200s, Parse's %.200s", got.Data, want.Data)
			}
			body, err := got.Body()
			if err != nil || !json.Valid(body) {
				t.Errorf("Body: %v %.100s", err, body)
			}
		})
	}
	if n < 20 {
		t.Errorf("only %d cases compared", n)
	}
}

// A member's bad UTF-8 (which a program can make, with @base64d) becomes
// U+FFFD, one for each bad byte, as encoding the object would make it; the
// limits count the replacements.
func TestFromObjectReplacesBadUTF8(t *testing.T) {
	base := map[string]any{"eventType": "e", "source": "s", "timestamp": "2024-01-02T03:04:05Z"}
	with := func(k, v string) map[string]any {
		m := maps.Clone(base)
		m[k] = v
		return m
	}
	ev, err := event.FromObject(with("eventType", "a\xffb\xff\xfe\xfdc\xe2\x82"), encodeCompact)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a\uFFFDb\uFFFD\uFFFD\uFFFDc\uFFFD\uFFFD"; ev.EventType != want || string(ev.Data) != "{}" {
		t.Errorf("eventType %q, want %q; data %s", ev.EventType, want, ev.Data)
	}
	// 128 bad bytes are 128 characters, 129 one too many.
	if _, err := event.FromObject(with("eventType", strings.Repeat("\xff", event.MaxEventTypeChars)), encodeCompact); err != nil {
		t.Errorf("%d bad bytes: %v", event.MaxEventTypeChars, err)
	}
	_, err = event.FromObject(with("eventType", strings.Repeat("\xff", event.MaxEventTypeChars+1)), encodeCompact)
	checkError(t, err, event.ReasonInvalidEvent, "eventType", "at most 128 characters, got 129")
}

// A NaN member is refused as the null it would be written as.
func TestFromObjectNaN(t *testing.T) {
	base := map[string]any{"eventType": "e", "source": "s", "timestamp": "2024-01-02T03:04:05Z"}
	for _, name := range []string{"eventType", "correlationId", "data"} {
		m := maps.Clone(base)
		m[name] = math.NaN()
		_, err := event.FromObject(m, encodeCompact)
		checkError(t, err, event.ReasonInvalidEvent, name, "got null")
	}
}

func decodeObject(value []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// encodeCompact is encoding/json without HTML escaping, as gojq encodes.
func encodeCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func decodeAny(t *testing.T, raw []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%.100s: %v", raw, err)
	}
	return v
}
