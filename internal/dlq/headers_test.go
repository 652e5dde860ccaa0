package dlq

import (
	"bytes"
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/event"
)

var allHeaders = []string{
	HeaderReason, HeaderError, HeaderHTTPStatus, HeaderHTTPBody, HeaderAttempts,
	HeaderFirstAttempt, HeaderLastAttempt, HeaderOriginalTopic, HeaderOriginalPartition,
	HeaderOriginalOffset, HeaderOriginalTimestamp, HeaderCorrelationID, HeaderTraceID,
	HeaderReplays,
}

func fullEntry() Entry {
	loc := time.FixedZone("CEST", 2*3600)
	return Entry{
		Reason: event.ReasonRejected, Error: "cxone: 422 Unprocessable Entity", Status: 422,
		Body: `{"error":"bad field"}`, Attempts: 3,
		FirstAttempt: time.Date(2026, 3, 1, 12, 0, 0, 123_456_789, loc),
		LastAttempt:  time.Date(2026, 3, 1, 12, 0, 5, 987_000_000, time.UTC),
		Topic:        "events", Partition: 4, Offset: 1 << 40,
		Timestamp:     time.UnixMilli(1_772_000_000_123),
		CorrelationID: "c0ffee", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Replays: 2,
	}
}

func header(hs []kafka.Header, key string) (string, int) {
	v, n := "", 0
	for _, h := range hs {
		if h.Key == key {
			v, n = string(h.Value), n+1
		}
	}
	return v, n
}

func TestRecordKeepsBytesAndHeaders(t *testing.T) {
	orig := kafka.Message{
		Topic: "events", Partition: 4, Offset: 99, Time: time.Now(),
		Key:   []byte{0, 0xff, 'k'},
		Value: []byte("\x00not json\xff"),
		Headers: []kafka.Header{
			{Key: "a", Value: []byte("1")},
			{Key: HeaderReason, Value: []byte("old")},
			{Key: "b", Value: nil},
			{Key: HeaderReplays, Value: []byte("1")},
			{Key: Prefix + "something.else", Value: []byte("x")},
			{Key: "a", Value: []byte("2")},
		},
	}
	origHeaders := append([]kafka.Header(nil), orig.Headers...)
	got := Record(orig, fullEntry())

	if got.Topic != "" || got.Partition != 0 || got.Offset != 0 || !got.Time.IsZero() {
		t.Errorf("topic/partition/offset/time = %q/%d/%d/%v, want zero", got.Topic, got.Partition, got.Offset, got.Time)
	}
	if !bytes.Equal(got.Key, orig.Key) || !bytes.Equal(got.Value, orig.Value) {
		t.Errorf("key/value changed: %q %q", got.Key, got.Value)
	}
	if !reflect.DeepEqual(orig.Headers, origHeaders) {
		t.Errorf("original headers modified: %v", orig.Headers)
	}
	wantOrig := []kafka.Header{origHeaders[0], origHeaders[2], origHeaders[5]}
	if !reflect.DeepEqual(got.Headers[:3], wantOrig) {
		t.Errorf("kept headers = %v, want %v", got.Headers[:3], wantOrig)
	}
	for _, h := range got.Headers[3:] {
		if !strings.HasPrefix(h.Key, Prefix) {
			t.Errorf("header %q after the dlq headers", h.Key)
		}
	}
	if len(got.Headers) != 3+len(allHeaders) {
		t.Errorf("%d headers, want %d", len(got.Headers), 3+len(allHeaders))
	}
	ts := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	want := map[string]string{
		HeaderReason: "rejected", HeaderError: "cxone: 422 Unprocessable Entity",
		HeaderHTTPStatus: "422", HeaderHTTPBody: `{"error":"bad field"}`, HeaderAttempts: "3",
		HeaderFirstAttempt: "2026-03-01T10:00:00.123Z", HeaderLastAttempt: "2026-03-01T12:00:05.987Z",
		HeaderOriginalTopic: "events", HeaderOriginalPartition: "4",
		HeaderOriginalOffset: "1099511627776", HeaderOriginalTimestamp: FormatTime(time.UnixMilli(1_772_000_000_123)),
		HeaderCorrelationID: "c0ffee", HeaderTraceID: "4bf92f3577b34da6a3ce929d0e0e4736", HeaderReplays: "2",
	}
	for _, k := range allHeaders {
		v, n := header(got.Headers, k)
		if n != 1 || v != want[k] {
			t.Errorf("%s = %q (%d times), want %q once", k, v, n, want[k])
		}
	}
	for _, k := range []string{HeaderFirstAttempt, HeaderLastAttempt, HeaderOriginalTimestamp} {
		if v, _ := header(got.Headers, k); !ts.MatchString(v) {
			t.Errorf("%s = %q, not RFC 3339 UTC with ms", k, v)
		}
	}
	if _, n := header(got.Headers, Prefix+"something.else"); n != 0 {
		t.Error("stale cxbridge.dlq.* header kept")
	}
}

func TestRecordOmitsEmptyOptionalFields(t *testing.T) {
	got := Record(kafka.Message{}, Entry{Reason: event.ReasonInvalidJSON, Topic: "events"})
	var keys []string
	for _, h := range got.Headers {
		keys = append(keys, h.Key)
	}
	want := []string{HeaderReason, HeaderAttempts, HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderReplays}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("headers = %v, want %v", keys, want)
	}
	if got.Key != nil || got.Value != nil {
		t.Errorf("null key/value became %v/%v", got.Key, got.Value)
	}
	if v, _ := header(Record(kafka.Message{}, Entry{}).Headers, HeaderReason); v != string(event.ReasonUnknown) {
		t.Errorf("empty reason written as %q", v)
	}
}

func TestRecordTruncatesTexts(t *testing.T) {
	long := strings.Repeat("a", MaxTextBytes-1) + "€" + strings.Repeat("b", 100) // € is 3 bytes
	got := Record(kafka.Message{}, Entry{Reason: event.ReasonRejected, Error: long, Body: long})
	for _, k := range []string{HeaderError, HeaderHTTPBody} {
		v, _ := header(got.Headers, k)
		if v != strings.Repeat("a", MaxTextBytes-1) {
			t.Errorf("%s: %d bytes, valid=%v", k, len(v), utf8.ValidString(v))
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"", 4, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"ab€", 4, "ab"},   // € = e2 82 ac straddles the limit
		{"ab€", 5, "ab€"},  // fits exactly
		{"ab€c", 5, "ab€"}, // cut right after it
		{"a😀", 2, "a"},     // 4-byte rune, cut after its first byte
		{"a😀", 4, "a"},     // ... after its third
		{"😀😀", 4, "😀"},
		{"\xff\xfe\xfd", 2, "\xff\xfe"}, // invalid bytes are cut anywhere
		{"a\x82\x82\x82\x82", 3, "a\x82\x82"},
		{"abc", 0, ""},
		{"abc", -1, ""},
	} {
		if got := Truncate(tc.in, tc.max); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	e := fullEntry()
	got, ok, err := Parse(Record(kafka.Message{}, e).Headers)
	if !ok || err != nil {
		t.Fatalf("Parse: ok=%v err=%v", ok, err)
	}
	if want := normalize(e); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}

	if _, ok, err := Parse([]kafka.Header{{Key: "x", Value: []byte("y")}, {Key: HeaderReplays, Value: []byte("1")}}); ok || err != nil {
		t.Errorf("no reason: ok=%v err=%v, want not a DLQ record", ok, err)
	}

	bad := []kafka.Header{
		{Key: HeaderReason, Value: []byte("rejected")},
		{Key: HeaderHTTPStatus, Value: []byte("4xx")},
		{Key: HeaderAttempts, Value: []byte("2")},
		{Key: HeaderOriginalOffset, Value: []byte("99999999999999999999")},
		{Key: HeaderLastAttempt, Value: []byte("yesterday")},
		{Key: HeaderReplays, Value: []byte("1")},
		{Key: HeaderReplays, Value: []byte("3")}, // the last one counts
		{Key: Prefix + "future", Value: []byte("ignored")},
	}
	got, ok, err = Parse(bad)
	if !ok || err == nil {
		t.Fatalf("Parse(bad): ok=%v err=%v", ok, err)
	}
	for _, k := range []string{HeaderHTTPStatus, HeaderOriginalOffset, HeaderLastAttempt} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not name %s", err, k)
		}
	}
	if !errors.Is(err, strconv.ErrSyntax) || !errors.Is(err, strconv.ErrRange) {
		t.Errorf("error %v does not wrap the strconv causes", err)
	}
	if got.Reason != "rejected" || got.Attempts != 2 || got.Replays != 3 || got.Status != 0 {
		t.Errorf("partial entry = %+v", got)
	}
}

func TestReplays(t *testing.T) {
	for _, tc := range []struct {
		hs   []kafka.Header
		want int
	}{
		{nil, 0},
		{[]kafka.Header{{Key: HeaderReplays, Value: []byte("4")}}, 4},
		{[]kafka.Header{{Key: HeaderReplays, Value: []byte("x")}}, 0},
		{[]kafka.Header{{Key: HeaderReplays, Value: []byte("-2")}}, 0},
		{[]kafka.Header{{Key: HeaderReplays, Value: nil}}, 0},
		{[]kafka.Header{{Key: HeaderReplays, Value: []byte("1")}, {Key: HeaderReplays, Value: []byte("2")}}, 2},
	} {
		if got := Replays(tc.hs); got != tc.want {
			t.Errorf("Replays(%v) = %d, want %d", tc.hs, got, tc.want)
		}
	}
}

func TestNewEntry(t *testing.T) {
	ts := time.UnixMilli(1_772_000_000_000)
	m := kafka.Message{Topic: "events", Partition: 2, Offset: 7, Time: ts,
		Headers: []kafka.Header{{Key: HeaderReplays, Value: []byte("1")}}}
	want := Entry{Reason: event.ReasonTooLarge, Topic: "events", Partition: 2, Offset: 7, Timestamp: ts, Replays: 1}
	if got := NewEntry(m, event.ReasonTooLarge); !reflect.DeepEqual(got, want) {
		t.Errorf("NewEntry = %+v, want %+v", got, want)
	}
}

// normalize is what a round trip through the headers makes of e.
func normalize(e Entry) Entry {
	tm := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Time{}
		}
		return t.UTC().Truncate(time.Millisecond)
	}
	if e.Reason == "" {
		e.Reason = event.ReasonUnknown
	}
	e.Error, e.Body = Truncate(e.Error, MaxTextBytes), Truncate(e.Body, MaxTextBytes)
	e.FirstAttempt, e.LastAttempt, e.Timestamp = tm(e.FirstAttempt), tm(e.LastAttempt), tm(e.Timestamp)
	return e
}

func FuzzParse(f *testing.F) {
	f.Add("rejected", "err", 422, "body", 3, int64(1_772_000_000_123), "events", 1, int64(5), "cid", "tid", 0, "4xx", "2026-01-01T00:00:00Z")
	f.Add("", "", 0, "", 0, int64(0), "", 0, int64(0), "", "", 0, "", "")
	f.Add("x", strings.Repeat("é", 600), -1, "\xff", -5, int64(-1), "t", -3, int64(-9), "", "", 7, "+1", "2026-13-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, reason, errText string, status int, body string, attempts int,
		ms int64, topic string, partition int, offset int64, cid, tid string, replays int,
		raw1, raw2 string) {
		// Arbitrary header values never panic.
		var hs []kafka.Header
		for _, k := range allHeaders {
			hs = append(hs, kafka.Header{Key: k, Value: []byte(raw1)}, kafka.Header{Key: k, Value: []byte(raw2)})
		}
		if _, ok, _ := Parse(hs); !ok {
			t.Fatal("reason header present but ok=false")
		}
		Replays(hs)
		if got := Truncate(errText, 7); len(got) > 7 || (utf8.ValidString(errText) && !utf8.ValidString(got)) {
			t.Fatalf("Truncate(%q, 7) = %q", errText, got)
		}

		// Record → Parse round-trips every field (times within RFC 3339's
		// years 0000-9999).
		const maxMs = 253402300799999
		ms %= maxMs
		if ms < 0 {
			ms = -ms
		}
		at := time.UnixMilli(ms).Add(time.Duration(attempts%1000) * time.Microsecond)
		e := Entry{Reason: event.Reason(reason), Error: errText, Status: status, Body: body, Attempts: attempts,
			FirstAttempt: at, LastAttempt: at.Add(time.Second), Topic: topic, Partition: partition,
			Offset: offset, Timestamp: time.UnixMilli(ms), CorrelationID: cid, TraceID: tid, Replays: replays}
		if at.Add(time.Second).Year() > 9999 {
			e.LastAttempt = time.Time{}
		}
		rec := Record(kafka.Message{Key: []byte(raw1), Value: []byte(raw2)}, e)
		got, ok, err := Parse(rec.Headers)
		if !ok || err != nil {
			t.Fatalf("Parse(Record(%+v)): ok=%v err=%v", e, ok, err)
		}
		want := normalize(e)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
		if replays >= 0 && Replays(rec.Headers) != replays {
			t.Fatalf("Replays = %d, want %d", Replays(rec.Headers), replays)
		}
		if string(rec.Key) != raw1 || string(rec.Value) != raw2 {
			t.Fatal("key/value changed")
		}
	})
}
