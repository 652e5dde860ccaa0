package event_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/event"
)

// eventsDir holds the sample events; cases.json there states the expected
// outcome of each file.
const eventsDir = "../../testdata/events"

// testCase is one record value and the outcome Parse must give it.
type testCase struct {
	Name   string
	Value  []byte
	Reason event.Reason // "" when the value is a valid event
	Field  string       // Error.Field
	Msg    string       // a substring of Error.Msg naming the rule
	// Want holds expected fields of the parsed event, as JSON: strings for
	// the string fields, the object for data (compared compact).
	Want map[string]json.RawMessage
}

// manifestEntry is one row of testdata/events/cases.json.
type manifestEntry struct {
	File   string                     `json:"file"`
	Reason event.Reason               `json:"reason"`
	Field  string                     `json:"field"`
	Msg    string                     `json:"msg"`
	Want   map[string]json.RawMessage `json:"want"`
	Note   string                     `json:"note"`
}

// fileCases loads the committed sample events. It fails when a file is not
// in the manifest or the manifest names a missing file, so that no sample
// goes untested.
func fileCases(tb testing.TB) []testCase {
	tb.Helper()
	manifest, err := os.ReadFile(filepath.Join(eventsDir, "cases.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var entries []manifestEntry
	dec := json.NewDecoder(bytes.NewReader(manifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		tb.Fatalf("cases.json: %v", err)
	}
	dirEntries, err := os.ReadDir(eventsDir)
	if err != nil {
		tb.Fatal(err)
	}
	onDisk := map[string]bool{}
	for _, de := range dirEntries {
		if de.Name() != "cases.json" {
			onDisk[de.Name()] = true
		}
	}
	cases := make([]testCase, 0, len(entries))
	for _, e := range entries {
		if !onDisk[e.File] {
			tb.Errorf("cases.json names %s, which is not in %s (or is listed twice)", e.File, eventsDir)
			continue
		}
		delete(onDisk, e.File)
		switch e.Reason {
		case "", event.ReasonInvalidJSON, event.ReasonInvalidEvent, event.ReasonTooLarge:
		default:
			tb.Errorf("cases.json: %s: unknown reason %q", e.File, e.Reason)
		}
		value, err := os.ReadFile(filepath.Join(eventsDir, e.File))
		if err != nil {
			tb.Fatal(err)
		}
		cases = append(cases, testCase{Name: e.File, Value: value, Reason: e.Reason, Field: e.Field, Msg: e.Msg, Want: e.Want})
	}
	for name := range onDisk {
		tb.Errorf("%s/%s has no row in cases.json", eventsDir, name)
	}
	return cases
}

// generatedCases builds the cases too big to commit, at the exact limits.
func generatedCases() []testCase {
	const head = `{"eventType":"order.created","source":"shop-backend","timestamp":"2024-01-02T03:04:05Z"`

	// dataOf returns a data object whose compact encoding is exactly n
	// bytes: {"s":"xxx…"} with fill characters of the given encoding.
	dataOf := func(n int, fill string) string {
		const wrap = len(`{"s":""}`)
		body := strings.Repeat(fill, (n-wrap)/len(fill))
		body += strings.Repeat("x", n-wrap-len(body))
		return `{"s":"` + body + `"}`
	}
	withData := func(data string) []byte { return []byte(head + `,"data":` + data + "}") }

	// padded returns a valid event of exactly n bytes, padded with an
	// unknown field (dropped by Parse).
	padded := func(n int) []byte {
		v := head + `,"padding":"`
		return []byte(v + strings.Repeat("p", n-len(v)-2) + `"}`)
	}

	// nested returns depth levels of arrays.
	nested := func(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }

	pretty := dataOf(event.MaxDataBytes, "x")
	pretty = strings.Replace(pretty, `{"s":`, "{\n  \"s\" :\t", 1)
	pretty = strings.Replace(pretty, `"}`, "\"\n\n}", 1)

	garbage := bytes.Repeat([]byte{0xff, 0x00, '{'}, (event.MaxBodyBytes+1)/3+1)[:event.MaxBodyBytes+1]

	return []testCase{
		{Name: "gen/data-500000-bytes", Value: withData(dataOf(event.MaxDataBytes, "x"))},
		{Name: "gen/data-500000-bytes-multibyte", Value: withData(dataOf(event.MaxDataBytes, "é"))},
		{Name: "gen/data-500000-bytes-compact-but-longer-raw", Value: withData(pretty)},
		{Name: "gen/data-500001-bytes", Value: withData(dataOf(event.MaxDataBytes+1, "x")),
			Reason: event.ReasonTooLarge, Field: "data", Msg: "is 500001 bytes as compact JSON, more than 500000"},
		{Name: "gen/data-500001-bytes-multibyte", Value: withData(dataOf(event.MaxDataBytes+1, "日")),
			Reason: event.ReasonTooLarge, Field: "data", Msg: "more than 500000"},
		{Name: "gen/record-1MiB", Value: padded(event.MaxBodyBytes)},
		{Name: "gen/record-1MiB+1", Value: padded(event.MaxBodyBytes + 1),
			Reason: event.ReasonTooLarge, Msg: "body is 1048577 bytes, more than 1048576"},
		{Name: "gen/garbage-1MiB+1", Value: garbage, Reason: event.ReasonTooLarge, Msg: "more than 1048576"},
		// Go's decoder refuses nesting deeper than 10,000 levels.
		{Name: "gen/nested-20000", Value: []byte(nested(20_000)), Reason: event.ReasonInvalidJSON, Msg: "not valid JSON"},
		{Name: "gen/nested-20000-objects", Value: []byte(strings.Repeat(`{"a":`, 20_000) + "1" + strings.Repeat("}", 20_000)),
			Reason: event.ReasonInvalidJSON, Msg: "not valid JSON"},
		{Name: "gen/data-nested-20000", Value: withData(`{"a":` + nested(20_000) + `}`), Reason: event.ReasonInvalidJSON, Msg: "not valid JSON"},
		// The event object and data are two levels, so 9,998 arrays reach
		// the decoder's limit exactly and one more goes past it.
		{Name: "gen/data-nested-10000-total", Value: withData(`{"a":` + nested(9_998) + `}`)},
		{Name: "gen/data-nested-10001-total", Value: withData(`{"a":` + nested(9_999) + `}`), Reason: event.ReasonInvalidJSON, Msg: "not valid JSON"},
	}
}

// allCases is every committed and generated case.
func allCases(tb testing.TB) []testCase {
	return append(fileCases(tb), generatedCases()...)
}

// bodyKeys returns the top-level keys of a publish body, sorted.
func bodyKeys(tb testing.TB, body []byte) []string {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatalf("body is not a JSON object: %v", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
