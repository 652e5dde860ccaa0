package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// mapMembers is what Parse read before knownMembers: every member in a
// map, filtered to the known names.
func mapMembers(obj []byte) (map[string]json.RawMessage, bool) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(obj, &all); err != nil || all == nil {
		return nil, false
	}
	known := map[string]json.RawMessage{}
	for _, n := range memberNames {
		if v, ok := all[n]; ok {
			known[n] = v
		}
	}
	return known, true
}

func membersSeeds(tb testing.TB) [][]byte {
	seeds := [][]byte{
		[]byte(`{}`),
		[]byte(` { } `),
		[]byte(`null`),
		[]byte("\t{\"eventType\" :\n\"a\" , \"source\":\"b\"}\r\n"),
		[]byte(`{"eventType":"first","eventType":"last"}`),
		[]byte(`{"\u0065ventType":"escaped name","data":{"eventType":"nested, not top-level"}}`),
		[]byte(`{"x":"a \" } ] { [ , : string","source":"s","y":[{"source":"no"},"\\"],"timestamp":1e-7}`),
		[]byte(`{"data":{"a":[1,2,{"b":null}],"c":"}"},"traceId":true,"correlationId":false,"z":-0.5E+3}`),
		[]byte(`{"EventType":"case matters","source ":"so do spaces","\u0073ource":"s"}`),
		[]byte(`{"correlationId":"\u00e9\ud83d\ude00","a\\u0065":1}`),
		[]byte(`[1,2,3]`),
		[]byte(`"str"`),
		[]byte(`12`),
	}
	files, _ := filepath.Glob("../../testdata/events/*")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && len(b) < 64<<10 {
			seeds = append(seeds, b)
		}
	}
	if len(files) == 0 {
		tb.Fatal("no sample events in testdata/events")
	}
	return seeds
}

// knownMembers reads the same values as a map of every member would, on
// valid JSON; on any input it does not panic.
func TestKnownMembersMatchesAMap(t *testing.T) {
	for _, s := range membersSeeds(t) {
		checkMembers(t, s)
	}
}

func FuzzKnownMembers(f *testing.F) {
	for _, s := range membersSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkMembers)
}

func checkMembers(t *testing.T, obj []byte) {
	got, gotOK := knownMembers(obj) // must not panic, valid or not
	if !json.Valid(obj) {
		return
	}
	want, wantOK := mapMembers(obj)
	var probe struct{}
	if json.Unmarshal(obj, &probe) != nil { // Parse stops before knownMembers
		return
	}
	if gotOK != wantOK || (wantOK && !reflect.DeepEqual(normalise(got), normalise(want))) {
		t.Fatalf("knownMembers(%q) = %q, %v; a map gives %q, %v", obj, got, gotOK, want, wantOK)
	}
}

func normalise(m map[string]json.RawMessage) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// Parse holds about the record's size whatever its shape: an object of
// 150,000 members, 100,000 levels of nesting, a million-digit number or a
// long run of numbers allocate at most a few times the record (a map of
// every member allocated some 17 times it).
func TestParseMemoryDoesNotGrowWithShape(t *testing.T) {
	const head = `{"eventType":"a.b","source":"s","timestamp":"2026-01-02T03:04:05Z",`
	var many, manyData strings.Builder
	many.WriteString(head)
	manyData.WriteString(head + `"data":{`)
	for i := 0; many.Len() < MaxBodyBytes-64; i++ {
		fmt.Fprintf(&many, `"%x":0,`, i)
	}
	for i := 0; manyData.Len() < MaxDataBytes-64; i++ {
		fmt.Fprintf(&manyData, `"%x":0,`, i)
	}
	many.WriteString(`"data":{"ok":1}}`)
	manyData.WriteString(`"z":0}}`)
	cases := []struct {
		name   string
		value  []byte
		reason Reason // "" = accepted
	}{
		{"150k top-level members", []byte(many.String()), ""},
		{"data of 60k members", []byte(manyData.String()), ""},
		{"100k levels of nesting", []byte(head + `"data":` + strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_001)), ReasonInvalidJSON},
		{"500k levels of arrays", []byte(strings.Repeat("[", 500_000) + strings.Repeat("]", 500_000)), ReasonInvalidJSON},
		{"a million-digit number", []byte(head + `"x":` + strings.Repeat("7", 1_000_000) + `}`), ""},
		{"a run of 500k numbers", []byte(head + `"data":{"n":[` + strings.Repeat("1,", 500_000) + "1]}}"), ReasonTooLarge},
		{"a 1 MB string", []byte(head + `"data":{"s":"` + strings.Repeat("x", 1_000_000) + `"}}`), ReasonTooLarge},
		{"a 170k-character eventType", []byte(`{"eventType":"` + strings.Repeat(`\u00e9`, 170_000) + `","source":"s","timestamp":"2026-01-02T03:04:05Z"}`), ReasonInvalidEvent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if len(c.value) > MaxBodyBytes {
				t.Fatalf("case is %d bytes, over the record limit", len(c.value))
			}
			var ev *Event
			var err error
			alloc := allocated(func() { ev, err = Parse(c.value) })
			switch {
			case c.reason == "" && err != nil:
				t.Fatalf("Parse: %v, want accepted", err)
			case c.reason != "":
				var e *Error
				if !errors.As(err, &e) || e.Reason != c.reason {
					t.Fatalf("Parse: %v, want %s", err, c.reason)
				}
			}
			if c.reason == "" && ev.EventType != "a.b" {
				t.Fatalf("accepted %+v", ev)
			}
			// At most: the compacted data (≤ the record) and a second copy
			// while a buffer grows, plus fixed costs.
			if limit := 3*uint64(len(c.value)) + 64<<10; alloc > limit {
				t.Errorf("Parse of %d bytes allocated %d bytes, more than %d", len(c.value), alloc, limit)
			}
			t.Logf("%d bytes: allocated %d KiB (%.1f×)", len(c.value), alloc>>10, float64(alloc)/float64(len(c.value)))
		})
	}
}

// allocated is how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
