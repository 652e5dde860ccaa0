package produce

import (
	"bytes"
	"strings"
)

// BadKind is one kind of bad record and the DLQ reason it must get.
type BadKind struct {
	Name   string
	Reason string // invalid_json, invalid_event or too_large
	Value  func() []byte
}

const okHead = `"eventType":"custom.user.action","source":"cxbridge-producer"`

// Bad lists every kind of bad record the producer writes.
var Bad = []BadKind{
	{"not_json", "invalid_json", func() []byte { return []byte("this is not json {") }},
	{"json_array", "invalid_event", func() []byte { return []byte(`[{"eventType":"a"}]`) }},
	{"missing_event_type", "invalid_event", func() []byte {
		return []byte(`{"source":"s","timestamp":"2026-11-28T10:00:00Z","data":{}}`)
	}},
	{"empty_source", "invalid_event", func() []byte {
		return []byte(`{"eventType":"a","source":"","timestamp":"2026-11-28T10:00:00Z"}`)
	}},
	{"event_type_too_long", "invalid_event", func() []byte {
		return []byte(`{"eventType":"` + strings.Repeat("e", 129) + `","source":"s","timestamp":"2026-11-28T10:00:00Z"}`)
	}},
	{"timestamp_offset", "invalid_event", func() []byte {
		return []byte(`{` + okHead + `,"timestamp":"2026-11-28T10:00:00+02:00"}`)
	}},
	{"timestamp_no_seconds", "invalid_event", func() []byte {
		return []byte(`{` + okHead + `,"timestamp":"2026-11-28T10:00Z"}`)
	}},
	{"data_not_object", "invalid_event", func() []byte {
		return []byte(`{` + okHead + `,"timestamp":"2026-11-28T10:00:00Z","data":[1,2]}`)
	}},
	{"data_too_large", "too_large", func() []byte {
		return []byte(`{` + okHead + `,"timestamp":"2026-11-28T10:00:00Z","data":{"blob":"` + strings.Repeat("a", 500_001) + `"}}`)
	}},
	{"binary_garbage", "invalid_json", func() []byte { return []byte{0x00, 0xff, 0x13, 0x37, 0x80, 0x7f, 0x01} }},
	{"deeply_nested", "invalid_json", func() []byte {
		return append(append(bytes.Repeat([]byte("["), 20_000), '1'), bytes.Repeat([]byte("]"), 20_000)...)
	}},
	{"invalid_utf8", "invalid_json", func() []byte {
		return []byte("{" + okHead + `,"timestamp":"2026-11-28T10:00:00Z","data":{"name":"` + "\xc3\x28" + `"}}`)
	}},
}
