package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cxbridge/cxbridge/internal/event"
)

// schemaFile is the JSON Schema that producers validate against
// (docs/CONTRACT.md explains it).
const schemaFile = "../../docs/event.schema.json"

// loadSchema compiles docs/event.schema.json with a draft 2020-12 validator.
func loadSchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		tb.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		tb.Fatalf("%s is not JSON: %v", schemaFile, err)
	}
	if m, _ := doc.(map[string]any); m["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		tb.Fatalf("%s: $schema is %v, want draft 2020-12", schemaFile, m["$schema"])
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("event.schema.json", doc); err != nil {
		tb.Fatal(err)
	}
	sch, err := c.Compile("event.schema.json")
	if err != nil {
		tb.Fatalf("%s does not compile: %v", schemaFile, err)
	}
	return sch
}

// schemaReason is what a producer validating value against the schema
// learns, as the DLQ reason the worker would give: "" when the schema
// accepts it, invalid_json when a JSON parser refuses it, invalid_event
// when the schema refuses it.
func schemaReason(tb testing.TB, sch *jsonschema.Schema, value []byte) (event.Reason, string) {
	tb.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return event.ReasonInvalidJSON, err.Error()
	}
	if err := sch.Validate(inst); err != nil {
		var verr *jsonschema.ValidationError
		if !errors.As(err, &verr) {
			tb.Fatalf("schema validation failed without a ValidationError: %v", err)
		}
		return event.ReasonInvalidEvent, err.Error()
	}
	return "", ""
}

// workerReason is the DLQ reason the worker gives value: Decode's, else
// that of encoding the publish body (a body over 1 MiB once the ids are
// filled in is too_large), "" when it would be published.
func workerReason(tb testing.TB, value []byte) (event.Reason, string) {
	tb.Helper()
	ev, err := event.Decode(value, event.Record{Topic: "orders", Partition: 3, Offset: 42})
	if err == nil {
		_, err = ev.Body()
	}
	if err == nil {
		return "", ""
	}
	var e *event.Error
	if !errors.As(err, &e) {
		tb.Fatalf("worker error %v is a %T, want *event.Error", err, err)
	}
	return e.Reason, err.Error()
}

// Beyond the schema: the rules JSON Schema cannot express, which only the
// worker checks (docs/CONTRACT.md lists them for producers).
const (
	beyondRecordSize = "record value over 1 MiB (JSON Schema has no byte sizes)"
	beyondDataSize   = "data over 500,000 bytes as compact JSON (JSON Schema has no byte sizes)"
	beyondBodySize   = "publish body over 1 MiB once encoded with the filled-in ids (JSON Schema has no byte sizes)"
	beyondUTF8       = "invalid UTF-8 (JSON parsers, Go's included, read it as U+FFFD before a schema sees it)"
)

// schemaCase is one record value, the worker's verdict and whether the
// schema can tell.
type schemaCase struct {
	name   string
	value  string
	reason event.Reason // the worker's DLQ reason; "" for a valid event
	// beyond names the rule the schema cannot express; the schema then
	// accepts the value while the worker does not.
	beyond string
}

const (
	tsOK   = `"timestamp":"2024-01-02T03:04:05Z"`
	headOK = `"eventType":"order.created","source":"shop-backend",` + tsOK
)

// obj is an event with the valid head and the given extra members.
func obj(members ...string) string {
	if len(members) == 0 {
		return "{" + headOK + "}"
	}
	return "{" + headOK + "," + strings.Join(members, ",") + "}"
}

// without is an event of the given members only.
func without(members ...string) string { return "{" + strings.Join(members, ",") + "}" }

func str(name, value string) string {
	b, _ := json.Marshal(value)
	return `"` + name + `":` + string(b)
}

// schemaCases holds every rule of the decoder (internal/event: event.go's
// Parse and Body, errors.go's reasons), each at its limit from both sides.
func schemaCases() []schemaCase {
	const et, src = `"eventType":"order.created"`, `"source":"shop-backend"`
	ts := func(v string) string { return `{` + et + `,` + src + `,` + str("timestamp", v) + `}` }
	rep := strings.Repeat
	cases := []schemaCase{
		// valid events
		{name: "minimal", value: obj()},
		{name: "every field", value: obj(str("correlationId", "c-1"), str("traceId", "t-1"), `"data":{"a":[1,2,{"b":null}]}`)},
		{name: "unknown members are dropped", value: obj(`"extra":1`, `"nested":{"x":[true]}`)},
		{name: "empty ids count as absent", value: obj(str("correlationId", ""), str("traceId", ""))},
		{name: "data empty object", value: obj(`"data":{}`)},
		{name: "escaped member name", value: `{"\u0065ventType":"x","source":"s",` + tsOK + `}`},
		{name: "duplicate member: the last wins", value: `{"eventType":1,"eventType":"x","source":"s",` + tsOK + `}`},
		{name: "whitespace around", value: " \n\t" + obj() + "\r\n "},
		{name: "lone surrogate escape reads as U+FFFD", value: without(`"eventType":"x\ud800y"`, src, tsOK)},

		// not JSON, not UTF-8, not an object
		{name: "not JSON", value: `eventType=order.created`, reason: event.ReasonInvalidJSON},
		{name: "empty value", value: ``, reason: event.ReasonInvalidJSON},
		{name: "truncated", value: `{"eventType":"x","source":`, reason: event.ReasonInvalidJSON},
		{name: "trailing garbage", value: obj() + `x`, reason: event.ReasonInvalidJSON},
		{name: "two objects", value: obj() + obj(), reason: event.ReasonInvalidJSON},
		{name: "trailing comma", value: `{` + headOK + `,}`, reason: event.ReasonInvalidJSON},
		{name: "single quotes", value: `{'eventType':'x'}`, reason: event.ReasonInvalidJSON},
		{name: "NaN", value: obj(`"data":{"x":NaN}`), reason: event.ReasonInvalidJSON},
		{name: "byte order mark", value: "\uFEFF" + obj(), reason: event.ReasonInvalidJSON},
		{name: "raw newline in a string", value: without(`"eventType":"a`+"\n"+`b"`, src, tsOK), reason: event.ReasonInvalidJSON},
		{name: "nested 10,001 levels", value: obj(`"data":{"a":` + rep("[", 9_999) + rep("]", 9_999) + `}`), reason: event.ReasonInvalidJSON},
		{name: "invalid UTF-8 in a string", value: without(`"eventType":"order`+"\xff\xfe"+`"`, src, tsOK), reason: event.ReasonInvalidJSON, beyond: beyondUTF8},
		{name: "overlong UTF-8 in a string", value: without(`"eventType":"a`+"\xc0\xaf"+`"`, src, tsOK), reason: event.ReasonInvalidJSON, beyond: beyondUTF8},
		{name: "array", value: `[` + obj() + `]`, reason: event.ReasonInvalidEvent},
		{name: "string", value: `"order.created"`, reason: event.ReasonInvalidEvent},
		{name: "number", value: `42`, reason: event.ReasonInvalidEvent},
		{name: "boolean", value: `true`, reason: event.ReasonInvalidEvent},
		{name: "null", value: `null`, reason: event.ReasonInvalidEvent},
		{name: "empty object", value: `{}`, reason: event.ReasonInvalidEvent},

		// eventType
		{name: "eventType missing", value: without(src, tsOK), reason: event.ReasonInvalidEvent},
		{name: "eventType wrong case", value: without(`"eventtype":"x"`, src, tsOK), reason: event.ReasonInvalidEvent},
		{name: "eventType null", value: without(`"eventType":null`, src, tsOK), reason: event.ReasonInvalidEvent},
		{name: "eventType number", value: without(`"eventType":7`, src, tsOK), reason: event.ReasonInvalidEvent},
		{name: "eventType object", value: without(`"eventType":{}`, src, tsOK), reason: event.ReasonInvalidEvent},
		{name: "eventType empty", value: without(`"eventType":""`, src, tsOK), reason: event.ReasonInvalidEvent},
		{name: "eventType at the limit", value: without(str("eventType", rep("e", event.MaxEventTypeChars)), src, tsOK)},
		{name: "eventType at the limit, multibyte", value: without(str("eventType", rep("日", event.MaxEventTypeChars)), src, tsOK)},
		{name: "eventType one over", value: without(str("eventType", rep("e", event.MaxEventTypeChars+1)), src, tsOK), reason: event.ReasonInvalidEvent},
		{name: "eventType one over, multibyte", value: without(str("eventType", rep("é", event.MaxEventTypeChars+1)), src, tsOK), reason: event.ReasonInvalidEvent},
		{name: "eventType may hold control characters (not a header)", value: without(str("eventType", "a\x01b\nc"), src, tsOK)},

		// source
		{name: "source missing", value: without(et, tsOK), reason: event.ReasonInvalidEvent},
		{name: "source number", value: without(et, `"source":1`, tsOK), reason: event.ReasonInvalidEvent},
		{name: "source empty", value: without(et, `"source":""`, tsOK), reason: event.ReasonInvalidEvent},
		{name: "source at the limit", value: without(et, str("source", rep("s", event.MaxSourceChars)), tsOK)},
		{name: "source at the limit, multibyte", value: without(et, str("source", rep("ß", event.MaxSourceChars)), tsOK)},
		{name: "source one over", value: without(et, str("source", rep("s", event.MaxSourceChars+1)), tsOK), reason: event.ReasonInvalidEvent},
		{name: "source tab", value: without(et, str("source", "shop\tbackend"), tsOK)},
		{name: "source U+2028", value: without(et, str("source", "shop\u2028backend"), tsOK)},
		{name: "source NUL", value: without(et, str("source", "shop\x00"), tsOK), reason: event.ReasonInvalidEvent},
		{name: "source CR LF", value: without(et, str("source", "shop\r\nX-Evil: 1"), tsOK), reason: event.ReasonInvalidEvent},
		{name: "source trailing newline", value: without(et, str("source", "shop\n"), tsOK), reason: event.ReasonInvalidEvent},
		{name: "source ESC", value: without(et, str("source", "\x1b[31m"), tsOK), reason: event.ReasonInvalidEvent},
		{name: "source unit separator", value: without(et, str("source", "a\x1fb"), tsOK), reason: event.ReasonInvalidEvent},
		{name: "source DEL", value: without(et, str("source", "a\x7fb"), tsOK), reason: event.ReasonInvalidEvent},

		// timestamp
		{name: "timestamp seconds", value: ts("2024-01-02T03:04:05Z")},
		{name: "timestamp millis", value: ts("2024-01-02T03:04:05.678Z")},
		{name: "timestamp one fraction digit", value: ts("2024-01-02T03:04:05.6Z")},
		{name: "timestamp nanos", value: ts("2024-01-02T03:04:05.123456789Z")},
		{name: "timestamp 40 fraction digits", value: ts("2024-01-02T03:04:05." + rep("1", 40) + "Z")},
		{name: "timestamp shape, not calendar", value: ts("2024-13-45T25:61:61Z")},
		{name: "timestamp missing", value: without(et, src), reason: event.ReasonInvalidEvent},
		{name: "timestamp number", value: without(et, src, `"timestamp":1704164645`), reason: event.ReasonInvalidEvent},
		{name: "timestamp null", value: without(et, src, `"timestamp":null`), reason: event.ReasonInvalidEvent},
		{name: "timestamp empty", value: ts(""), reason: event.ReasonInvalidEvent},
		{name: "timestamp offset", value: ts("2024-01-02T03:04:05+01:00"), reason: event.ReasonInvalidEvent},
		{name: "timestamp zero offset", value: ts("2024-01-02T03:04:05+00:00"), reason: event.ReasonInvalidEvent},
		{name: "timestamp no zone", value: ts("2024-01-02T03:04:05"), reason: event.ReasonInvalidEvent},
		{name: "timestamp lower-case z", value: ts("2024-01-02T03:04:05z"), reason: event.ReasonInvalidEvent},
		{name: "timestamp lower-case t", value: ts("2024-01-02t03:04:05Z"), reason: event.ReasonInvalidEvent},
		{name: "timestamp space", value: ts("2024-01-02 03:04:05Z"), reason: event.ReasonInvalidEvent},
		{name: "timestamp no seconds", value: ts("2024-01-02T03:04Z"), reason: event.ReasonInvalidEvent},
		{name: "timestamp date only", value: ts("2024-01-02"), reason: event.ReasonInvalidEvent},
		{name: "timestamp empty fraction", value: ts("2024-01-02T03:04:05.Z"), reason: event.ReasonInvalidEvent},
		{name: "timestamp comma fraction", value: ts("2024-01-02T03:04:05,678Z"), reason: event.ReasonInvalidEvent},
		{name: "timestamp leading space", value: ts(" 2024-01-02T03:04:05Z"), reason: event.ReasonInvalidEvent},
		{name: "timestamp trailing newline", value: ts("2024-01-02T03:04:05Z\n"), reason: event.ReasonInvalidEvent},
		{name: "timestamp Arabic-Indic digits", value: ts("٢٠٢٤-01-02T03:04:05Z"), reason: event.ReasonInvalidEvent},
		{name: "timestamp Unix seconds as a string", value: ts("1704164645"), reason: event.ReasonInvalidEvent},
		{name: "timestamp RFC 1123", value: ts("Tue, 02 Jan 2024 03:04:05 GMT"), reason: event.ReasonInvalidEvent},
	}
	// correlationId and traceId share their rules.
	for _, id := range []string{"correlationId", "traceId"} {
		cases = append(cases,
			schemaCase{name: id + " at the limit", value: obj(str(id, rep("i", event.MaxIDChars)))},
			schemaCase{name: id + " at the limit, multibyte", value: obj(str(id, rep("ü", event.MaxIDChars)))},
			schemaCase{name: id + " tab", value: obj(str(id, "a\tb"))},
			schemaCase{name: id + " one over", value: obj(str(id, rep("i", event.MaxIDChars+1))), reason: event.ReasonInvalidEvent},
			schemaCase{name: id + " null", value: obj(`"` + id + `":null`), reason: event.ReasonInvalidEvent},
			schemaCase{name: id + " number", value: obj(`"` + id + `":12345`), reason: event.ReasonInvalidEvent},
			schemaCase{name: id + " object", value: obj(`"` + id + `":{}`), reason: event.ReasonInvalidEvent},
			schemaCase{name: id + " newline", value: obj(str(id, "a\nb")), reason: event.ReasonInvalidEvent},
			schemaCase{name: id + " NUL", value: obj(str(id, "\x00")), reason: event.ReasonInvalidEvent},
			schemaCase{name: id + " DEL", value: obj(str(id, "a\x7f")), reason: event.ReasonInvalidEvent},
		)
	}

	// data
	dataOf := func(n int) string { // compact JSON object of exactly n bytes
		const wrap = len(`{"s":""}`)
		return `{"s":"` + rep("x", n-wrap) + `"}`
	}
	padded := func(n int) string { // a valid event of exactly n bytes
		v := "{" + headOK + `,"padding":"`
		return v + rep("p", n-len(v)-2) + `"}`
	}
	cases = append(cases,
		schemaCase{name: "data array", value: obj(`"data":[]`), reason: event.ReasonInvalidEvent},
		schemaCase{name: "data string", value: obj(`"data":"{}"`), reason: event.ReasonInvalidEvent},
		schemaCase{name: "data number", value: obj(`"data":1`), reason: event.ReasonInvalidEvent},
		schemaCase{name: "data boolean", value: obj(`"data":false`), reason: event.ReasonInvalidEvent},
		schemaCase{name: "data null", value: obj(`"data":null`), reason: event.ReasonInvalidEvent},
		schemaCase{name: "data at the limit", value: obj(`"data":` + dataOf(event.MaxDataBytes))},
		schemaCase{name: "data at the limit as compact JSON, longer as sent", value: obj(`"data":` + strings.Replace(dataOf(event.MaxDataBytes), `{"s":`, "{\n  \"s\" : ", 1))},
		schemaCase{name: "data one byte over", value: obj(`"data":` + dataOf(event.MaxDataBytes+1)), reason: event.ReasonTooLarge, beyond: beyondDataSize},
		schemaCase{name: "record at the limit", value: padded(event.MaxBodyBytes)},
		schemaCase{name: "record one byte over", value: padded(event.MaxBodyBytes + 1), reason: event.ReasonTooLarge, beyond: beyondRecordSize},
		schemaCase{name: "publish body over 1 MiB from a record under it", value: bodyOverLimit(), reason: event.ReasonTooLarge, beyond: beyondBodySize},
	)
	return cases
}

// bodyOverLimit is a valid event of at most 1 MiB whose publish body is
// over 1 MiB: the body escapes U+2028 (3 bytes) as \u2028 (6 bytes) in
// every string field, and the rest is a long timestamp fraction.
func bodyOverLimit() string {
	const ls = "\u2028"
	rep := strings.Repeat
	fields := without(
		`"eventType":"`+rep(ls, event.MaxEventTypeChars)+`"`,
		`"source":"`+rep(ls, event.MaxSourceChars)+`"`,
		`"correlationId":"`+rep(ls, event.MaxIDChars)+`"`,
		`"traceId":"`+rep(ls, event.MaxIDChars)+`"`,
		`"timestamp":"2024-01-02T03:04:05.FRACTIONZ"`,
	)
	return strings.Replace(fields, "FRACTION", rep("1", event.MaxBodyBytes-len(fields)+len("FRACTION")), 1)
}

// The schema producers validate against (docs/event.schema.json) and the
// worker's decoder agree on every rule the decoder knows: a value the
// schema accepts is published, one it refuses is dead-lettered
// invalid_event, and one no JSON parser reads is invalid_json — except for
// the rules JSON Schema cannot express (byte sizes, invalid UTF-8), where
// the schema accepts what the worker dead-letters, as docs/CONTRACT.md says.
func TestSchemaAgreesWithDecoder(t *testing.T) {
	t.Parallel()
	sch := loadSchema(t)
	seen := map[string]bool{}
	for _, tc := range schemaCases() {
		if seen[tc.name] {
			t.Fatalf("case %q twice", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			value := []byte(tc.value)
			worker, werr := workerReason(t, value)
			if worker != tc.reason {
				t.Fatalf("worker: reason %q (%s), want %q", worker, werr, tc.reason)
			}
			schema, serr := schemaReason(t, sch, value)
			if tc.beyond != "" {
				if schema != "" {
					t.Fatalf("schema refuses it (%s: %s), but the rule it breaks is one the schema cannot express: %s", schema, serr, tc.beyond)
				}
				checkBeyond(t, value, tc.beyond)
				return
			}
			if schema != worker {
				t.Fatalf("schema says %q (%s), worker says %q (%s)", schema, serr, worker, werr)
			}
		})
	}
}

// checkBeyond asserts that a case said to be beyond the schema really
// breaks the rule named: so that the escape hatch cannot hide a schema bug.
func checkBeyond(t *testing.T, value []byte, beyond string) {
	t.Helper()
	switch beyond {
	case beyondRecordSize:
		if len(value) <= event.MaxBodyBytes {
			t.Errorf("record is %d bytes, not over %d", len(value), event.MaxBodyBytes)
		}
	case beyondDataSize:
		var ev struct{ Data json.RawMessage }
		var buf bytes.Buffer
		if err := json.Unmarshal(value, &ev); err != nil || json.Compact(&buf, ev.Data) != nil || buf.Len() <= event.MaxDataBytes {
			t.Errorf("data is %d bytes compact (%v), not over %d", buf.Len(), err, event.MaxDataBytes)
		}
	case beyondBodySize:
		if len(value) > event.MaxBodyBytes {
			t.Errorf("record is %d bytes: the case must be under the record limit", len(value))
		}
	case beyondUTF8:
		if utf8.Valid(value) {
			t.Error("value is valid UTF-8")
		}
	default:
		t.Fatalf("unknown rule %q", beyond)
	}
}

// Every committed sample event (testdata/events) and generated limit case
// gets the same verdict from the schema as from the worker, but for the
// byte sizes and invalid UTF-8 that the schema cannot express.
func TestSchemaAgreesWithSamples(t *testing.T) {
	t.Parallel()
	sch := loadSchema(t)
	for _, tc := range allCases(t) {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			worker, werr := workerReason(t, tc.Value)
			if worker != tc.Reason {
				t.Fatalf("worker: reason %q (%s), want %q (cases.json)", worker, werr, tc.Reason)
			}
			schema, serr := schemaReason(t, sch, tc.Value)
			switch {
			case worker == event.ReasonTooLarge:
				t.Skipf("beyond the schema: byte sizes (%s)", werr)
			case worker == event.ReasonInvalidJSON && !utf8.Valid(tc.Value):
				t.Skipf("beyond the schema: invalid UTF-8 (the schema says %q)", schema)
			}
			if schema != worker {
				t.Fatalf("schema says %q (%s), worker says %q (%s)", schema, serr, worker, werr)
			}
		})
	}
}

// The limits written in the schema are the decoder's constants.
func TestSchemaLimits(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Required   []string `json:"required"`
		Properties map[string]struct {
			Type      string `json:"type"`
			MinLength *int   `json:"minLength"`
			MaxLength *int   `json:"maxLength"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Required, ","); got != "eventType,source,timestamp" {
		t.Errorf("required = %s, want eventType,source,timestamp", got)
	}
	want := map[string]struct {
		typ      string
		min, max int // -1: none
	}{
		"eventType":     {"string", 1, event.MaxEventTypeChars},
		"source":        {"string", 1, event.MaxSourceChars},
		"timestamp":     {"string", -1, -1},
		"correlationId": {"string", -1, event.MaxIDChars},
		"traceId":       {"string", -1, event.MaxIDChars},
		"data":          {"object", -1, -1},
	}
	if len(s.Properties) != len(want) {
		t.Errorf("schema has %d properties, want the %d the worker reads", len(s.Properties), len(want))
	}
	orNone := func(p *int) int {
		if p == nil {
			return -1
		}
		return *p
	}
	for name, w := range want {
		p, ok := s.Properties[name]
		if !ok {
			t.Errorf("schema lacks %s", name)
			continue
		}
		if p.Type != w.typ || orNone(p.MinLength) != w.min || orNone(p.MaxLength) != w.max {
			t.Errorf("%s: type %s minLength %d maxLength %d, want %s %d %d", name, p.Type, orNone(p.MinLength), orNone(p.MaxLength), w.typ, w.min, w.max)
		}
	}
}

// Every error text docs/CONTRACT.md shows (a code span starting "event: ")
// is one the worker gives a case of the table above, word for word.
func TestContractShowsDecoderErrors(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/CONTRACT.md")
	if err != nil {
		t.Fatal(err)
	}
	given := map[string]bool{}
	for _, tc := range schemaCases() {
		if _, msg := workerReason(t, []byte(tc.value)); msg != "" {
			given[msg] = true
		}
	}
	shown := regexp.MustCompile("`(event: [^`]+)`").FindAllStringSubmatch(string(doc), -1)
	if len(shown) < 10 {
		t.Fatalf("docs/CONTRACT.md shows %d error texts, want its table's (10 or more)", len(shown))
	}
	for _, m := range shown {
		if !given[m[1]] {
			t.Errorf("docs/CONTRACT.md shows the error %q, which no case of schemaCases gets from the worker", m[1])
		}
	}
}
