package transform

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// decodeCorpus is JSON at the edges of the grammar, valid and not: what
// decodeFast must judge and build exactly as encoding/json does.
var decodeCorpus = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5`, `-1.5e-7`, `1E+2`, `12345678901234567890`,
	`123456789012345678901234567890.123456789e-5`, `"s"`, `""`, ` {"a":1} `, "\t[1,\n2]\r\n",
	`{"a":1,"a":2}`, `{"a":{"b":[1,{"c":null}]}}`, `[[[[[[[[]]]]]]]]`,
	`"\u00e9\ud83d\ude00\n\t\"\\\/"`, `"\ud800"`, `"\udc00x"`, `"\ud800\u0041"`, `"\u2028<&>"`,
	`"é😀"`, `{"é":"ü"}`, `{"":""}`,
	// Not JSON.
	``, ` `, `01`, `-`, `1.`, `.5`, `1e`, `+1`, `0x10`, `NaN`, `Infinity`, `-Infinity`, `nul`, `tru`, `True`,
	`"\x"`, `"\u00zz"`, `"\u12"`, "\"a\x01b\"", "\"tab\there\"", `"unterminated`, `'s'`,
	`{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{a:1}`, `{"a":1}}`, `[1]]`, `{"a":1} x`, `1 2`,
	`{"a":1`, `[`, `]`, `}`, `{"a" 1}`, `{1:2}`, `[1 2]`, `"a" "b"`, "\u00a0{}", `{"a":1}/**/`,
}

// decodeFast takes exactly the values encoding/json takes (as one JSON
// value with UseNumber) and builds the same Go values from them, up to
// fastDepth levels of nesting; deeper values it leaves to encoding/json.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range decodeCorpus {
		checkDecodeAgrees(t, []byte(in))
	}
	nests := []struct{ open, close string }{{"[", "]"}, {`{"a":`, "}"}, {`[{"\"[":`, "}]"}, {`{"]}":[`, "]}"}}
	for _, depth := range []int{1, fastDepth/2 - 1, fastDepth / 2, fastDepth/2 + 1} {
		for _, nest := range nests {
			value := []byte(strings.Repeat(nest.open, depth) + "1" + strings.Repeat(nest.close, depth))
			if d := nesting(nest.open) * depth; (d <= fastDepth) != shallow(value, fastDepth) {
				t.Errorf("%.80s: shallow = %v at depth %d", value, !(d <= fastDepth), d)
			}
			checkDecodeAgrees(t, value)
		}
	}
}

// Deep values are parsed by encoding/json, in its time: the fast parser
// would take seconds for 20 KB nested 10,000 deep.
func TestDecodeDeepValues(t *testing.T) {
	for _, depth := range []int{fastDepth + 1, 10000, 10001} { // encoding/json refuses more than 10,000
		value := []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
		if shallow(value, fastDepth) {
			t.Fatalf("depth %d: shallow", depth)
		}
		if _, ok := decodeFast(value); ok {
			t.Fatalf("depth %d: decodeFast parsed it", depth)
		}
		_, err := decode(value)
		if (err != nil) != (depth > 10000) {
			t.Errorf("depth %d: %v", depth, err)
		}
	}
}

// nesting is how many levels open opens.
func nesting(open string) int {
	return strings.Count(open, "[") + strings.Count(open, "{") - strings.Count(open, `"[`)
}

func FuzzDecode(f *testing.F) {
	for _, in := range decodeCorpus {
		f.Add([]byte(in))
	}
	f.Fuzz(checkDecodeAgrees)
}

func checkDecodeAgrees(t *testing.T, value []byte) {
	t.Helper()
	want, werr := decodeStd(value)
	got, ok := decodeFast(value)
	switch {
	case ok && werr != nil:
		t.Errorf("%.80q: decodeFast took it as %.200v; encoding/json: %v", value, got, werr)
	case !ok && werr == nil && shallow(value, fastDepth):
		t.Errorf("%.80q: decodeFast refused it; encoding/json took it as %.200v", value, want)
	case ok && !reflect.DeepEqual(got, want):
		t.Errorf("%.80q: decodeFast built %.200v, encoding/json %.200v", value, got, want)
	}
	if ok {
		if _, isNumber := got.(json.Number); isNumber && !json.Valid(value) {
			t.Errorf("%.80q: a number that is not JSON", value)
		}
	}
}
