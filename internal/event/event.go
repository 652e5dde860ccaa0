// Package event decodes a Kafka record value into a CXone event, validates it
// against the input contract (docs/CONTRACT.md, docs/event.schema.json) and encodes the
// body that is sent to POST /api/v2/events/publish.
//
// It knows nothing of Kafka clients or HTTP: callers pass the record's
// coordinates and headers as plain values. Every failure is an *Error whose
// Reason decides where the record goes (always the DLQ: bad input is never
// retried).
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Limits of the contract.
const (
	// MaxDataBytes is the largest compact JSON encoding of data.
	MaxDataBytes = 500_000
	// MaxBodyBytes is the largest record value and the largest publish body (1 MiB).
	MaxBodyBytes = 1 << 20
	// MaxEventTypeChars and MaxSourceChars bound eventType and source, in characters.
	MaxEventTypeChars = 128
	MaxSourceChars    = 256
	// MaxIDChars bounds correlationId and traceId: they travel as HTTP headers.
	MaxIDChars = 1024
)

// Event is one CXone event, exactly the fields of the publish body.
type Event struct {
	EventType     string          `json:"eventType"`
	Source        string          `json:"source"`
	Timestamp     string          `json:"timestamp"`
	CorrelationID string          `json:"correlationId"`
	TraceID       string          `json:"traceId"`
	Data          json.RawMessage `json:"data"` // compact JSON object

	compact bool // Data is known compact and valid (set by Parse)
}

var timestampRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$`)

// Parse checks body as a publish body: a JSON object whose fields follow the
// contract. Unknown fields are dropped; correlationId and traceId may be
// absent (empty in the result). data is compacted, {} when absent.
func Parse(body []byte) (*Event, error) {
	if len(body) > MaxBodyBytes {
		return nil, errorf(ReasonTooLarge, "", "body is %d bytes, more than %d", len(body), MaxBodyBytes)
	}
	if !utf8.Valid(body) {
		return nil, errorf(ReasonInvalidJSON, "", "not valid UTF-8")
	}
	// Check the syntax and that body is an object without building it: an
	// empty struct keeps nothing of what it skips. (A map of every member
	// cost some 17 times the record for one with 150,000 small members.)
	var probe struct{}
	if err := json.Unmarshal(body, &probe); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, errorf(ReasonInvalidEvent, "", "must be a JSON object, got %s", typeErr.Value)
		}
		return nil, errorf(ReasonInvalidJSON, "", "not valid JSON: %v", err)
	}
	fields, ok := knownMembers(body)
	if !ok { // the literal null: the only valid non-object a struct takes
		return nil, errorf(ReasonInvalidEvent, "", "must be a JSON object, got %s", jsonKind(body[skipSpace(body, 0):]))
	}
	return build(func(name string, rule stringRule) (string, error) {
		return stringField(fields, name, rule)
	}, func() (json.RawMessage, error) {
		return dataField(fields["data"])
	})
}

// FromObject checks an event given as its decoded top-level members, as a
// jq program yields it, by the rules Parse applies to a body: the same
// fields, limits, errors and reasons, without encoding the object and
// parsing it again. Members are the values encoding/json or gojq decode
// JSON into (string, bool, nil, map[string]any, []any, numbers); other
// members are dropped. A string that is not valid UTF-8 has each bad byte
// replaced with U+FFFD, and a NaN is taken for null, as encoding the object
// would write them (gojq does so). data, when it is an object, is encoded
// by encode, which must return compact JSON.
func FromObject(members map[string]any, encode func(any) ([]byte, error)) (*Event, error) {
	return build(func(name string, rule stringRule) (string, error) {
		v, ok := members[name]
		s, isString := v.(string)
		if ok && !isString {
			return "", errorf(ReasonInvalidEvent, name, "must be a string, got %s", valueKind(v))
		}
		return checkString(name, validUTF8(s), ok, rule)
	}, func() (json.RawMessage, error) {
		v, ok := members["data"]
		if !ok {
			return json.RawMessage("{}"), nil
		}
		if _, isObject := v.(map[string]any); !isObject {
			return nil, errorf(ReasonInvalidEvent, "data", "must be a JSON object, got %s", valueKind(v))
		}
		data, err := encode(v)
		if err != nil {
			return nil, errorf(ReasonInvalidJSON, "data", "cannot be encoded as JSON: %v", err)
		}
		return checkDataSize(data)
	})
}

// build makes an event of the members that str (a string member, checked
// by rule) and data (the data member, compact) read.
func build(str func(name string, rule stringRule) (string, error), data func() (json.RawMessage, error)) (*Event, error) {
	ev := &Event{}
	var err error
	// source, correlationId and traceId are also sent as HTTP headers
	// (X-Source-System, X-Correlation-ID, X-Trace-ID); eventType and
	// timestamp travel only in the body.
	if ev.EventType, err = str("eventType", stringRule{required: true, minChars: 1, maxChars: MaxEventTypeChars}); err != nil {
		return nil, err
	}
	if ev.Source, err = str("source", stringRule{required: true, minChars: 1, maxChars: MaxSourceChars, header: true}); err != nil {
		return nil, err
	}
	// The contract bounds timestamp only by its pattern (\.\d+ has no upper
	// bound); the record size bounds it in practice.
	if ev.Timestamp, err = str("timestamp", stringRule{required: true, minChars: 1, maxChars: MaxBodyBytes}); err != nil {
		return nil, err
	}
	if !timestampRE.MatchString(ev.Timestamp) {
		return nil, errorf(ReasonInvalidEvent, "timestamp", "must be ISO 8601 UTC like 2024-01-02T03:04:05Z or 2024-01-02T03:04:05.678Z, got %q", truncate(ev.Timestamp, 64))
	}
	if ev.CorrelationID, err = str("correlationId", stringRule{maxChars: MaxIDChars, header: true}); err != nil {
		return nil, err
	}
	if ev.TraceID, err = str("traceId", stringRule{maxChars: MaxIDChars, header: true}); err != nil {
		return nil, err
	}
	if ev.Data, err = data(); err != nil {
		return nil, err
	}
	ev.compact = true
	return ev, nil
}

// The top-level members Parse reads; every other one is dropped.
var memberNames = [...]string{"eventType", "source", "timestamp", "correlationId", "traceId", "data"}

// knownMembers returns the raw values of the members of obj named in
// memberNames, the last one winning when a name repeats (as
// encoding/json fills a map). obj must be valid JSON (checked by the
// caller); ok is false when it is not an object. The values are slices of
// obj; other members are skipped without being copied or kept, so that the
// memory Parse holds does not grow with the number of members.
func knownMembers(obj []byte) (fields map[string]json.RawMessage, ok bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	fields = make(map[string]json.RawMessage, len(memberNames))
	i++
	for i < len(obj) {
		i = skipSpace(obj, i)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
		if i >= len(obj) || obj[i] == '}' {
			break
		}
		keyEnd := skipValue(obj, i) // a string
		name, known := memberName(obj[i:keyEnd])
		i = skipSpace(obj, keyEnd)
		i = skipSpace(obj, i+1) // the ':'
		end := skipValue(obj, i)
		if known && end > i {
			fields[name] = obj[i:end:end]
		}
		i = end
	}
	return fields, true
}

// memberName returns the member name that the quoted JSON string raw
// decodes to, when it is one of memberNames.
func memberName(raw []byte) (string, bool) {
	if len(raw) < 2 {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		for _, n := range memberNames {
			if string(inner) == n {
				return n, true
			}
		}
		return "", false
	}
	// An escaped name (\u0065ventType) is rare; each character takes at
	// most 6 bytes escaped, so a longer one cannot be a known name.
	if len(inner) > 6*len("correlationId") {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	for _, n := range memberNames {
		if s == n {
			return n, true
		}
	}
	return "", false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the valid JSON value starting at b[i] (at
// most len(b), whatever b holds). It keeps no stack: nesting is a counter,
// so depth costs no memory.
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			depth--
			i++
		default:
			if depth == 0 { // a number, true, false or null
				for i < len(b) && !isDelim(b[i]) {
					i++
				}
				return i
			}
			i++
		}
		if depth == 0 {
			return min(i, len(b))
		}
	}
	return len(b)
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// stringRule is what the contract asks of one string field.
type stringRule struct {
	required           bool
	minChars, maxChars int  // in characters (code points), as the contract counts
	header             bool // also sent as an HTTP header value
}

func stringField(fields map[string]json.RawMessage, name string, rule stringRule) (string, error) {
	raw, ok := fields[name]
	var s string
	if ok {
		if raw[0] != '"' {
			return "", errorf(ReasonInvalidEvent, name, "must be a string, got %s", jsonKind(raw))
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errorf(ReasonInvalidEvent, name, "must be a string: %v", err)
		}
	}
	return checkString(name, s, ok, rule)
}

// checkString applies rule to member name's string s (present: whether the
// member is there at all).
func checkString(name, s string, present bool, rule stringRule) (string, error) {
	if !present {
		if rule.required {
			return "", errorf(ReasonInvalidEvent, name, "is required")
		}
		return "", nil
	}
	n := utf8.RuneCountInString(s)
	if n < rule.minChars {
		return "", errorf(ReasonInvalidEvent, name, "must not be empty")
	}
	if n > rule.maxChars {
		return "", errorf(ReasonInvalidEvent, name, "must be at most %d characters, got %d", rule.maxChars, n)
	}
	if rule.header && !headerSafe(s) {
		return "", errorf(ReasonInvalidEvent, name, "must not contain control characters")
	}
	return s, nil
}

func dataField(raw json.RawMessage) (json.RawMessage, error) {
	if raw == nil {
		return json.RawMessage("{}"), nil
	}
	if raw[0] != '{' {
		return nil, errorf(ReasonInvalidEvent, "data", "must be a JSON object, got %s", jsonKind(raw))
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return nil, errorf(ReasonInvalidJSON, "data", "not valid JSON: %v", err)
	}
	return checkDataSize(buf.Bytes())
}

// checkDataSize returns data, compact JSON, unless it is too large.
func checkDataSize(data []byte) (json.RawMessage, error) {
	if len(data) > MaxDataBytes {
		return nil, errorf(ReasonTooLarge, "data", "is %d bytes as compact JSON, more than %d", len(data), MaxDataBytes)
	}
	return data, nil
}

// headerSafe reports whether s can travel as an HTTP header value: no
// control characters other than tab (X-Source-System, X-Correlation-ID and
// X-Trace-ID carry these fields).
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func jsonKind(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// validUTF8 is s with each byte that is not part of valid UTF-8 replaced
// with U+FFFD, as JSON encoders write it.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s { // a bad byte ranges as utf8.RuneError, one at a time
		b.WriteRune(r)
	}
	return b.String()
}

// valueKind is jsonKind for a decoded value (a NaN is written as null).
func valueKind(v any) string {
	if f, ok := v.(float64); ok && math.IsNaN(f) {
		return "null"
	}
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Body encodes the publish body. Empty Data is sent as {}. It fails with
// ReasonTooLarge when the body would exceed MaxBodyBytes, and with a plain
// error when Data is not valid JSON (never the case after Parse or Decode,
// whose Data is already compact and is copied as it is).
func (e *Event) Body() ([]byte, error) {
	data := []byte(e.Data)
	switch {
	case len(data) == 0:
		data = []byte("{}")
	case !e.compact:
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err != nil {
			return nil, fmt.Errorf("encode event: data: %w", err)
		}
		data = buf.Bytes()
	}
	body := make([]byte, 0, len(data)+len(e.EventType)+len(e.Source)+len(e.Timestamp)+len(e.CorrelationID)+len(e.TraceID)+96)
	body = append(body, `{"eventType":`...)
	body = appendString(body, e.EventType)
	body = append(body, `,"source":`...)
	body = appendString(body, e.Source)
	body = append(body, `,"timestamp":`...)
	body = appendString(body, e.Timestamp)
	body = append(body, `,"correlationId":`...)
	body = appendString(body, e.CorrelationID)
	body = append(body, `,"traceId":`...)
	body = appendString(body, e.TraceID)
	body = append(body, `,"data":`...)
	body = append(body, data...)
	body = append(body, '}')
	if len(body) > MaxBodyBytes {
		return nil, errorf(ReasonTooLarge, "", "publish body is %d bytes, more than %d", len(body), MaxBodyBytes)
	}
	return body, nil
}

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping off: invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are
// escaped.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
