// Package dlq defines cxbridge's dead-letter record and writes it durably.
//
// A DLQ record keeps the original key and value bytes unchanged, so that a
// replay is a plain re-produce, keeps the original headers, and adds the
// cxbridge.dlq.* headers below (see Record and Parse). The Writer produces DLQ
// records synchronously with acks=all and retries a failed write with backoff
// until it succeeds or its context ends: a record is settled only once the DLQ
// topic durably holds it.
package dlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/event"
)

// Prefix starts the key of every header this package writes.
const Prefix = "cxbridge.dlq."

// The headers of a DLQ record. Integers are decimal; times are RFC 3339 in UTC
// with milliseconds (TimeFormat).
const (
	HeaderReason            = Prefix + "reason"             // always present: an event.Reason
	HeaderError             = Prefix + "error"              // optional, ≤ MaxTextBytes
	HeaderHTTPStatus        = Prefix + "http.status"        // optional: CXone's HTTP status
	HeaderHTTPBody          = Prefix + "http.body"          // optional: CXone's answer, ≤ MaxTextBytes
	HeaderAttempts          = Prefix + "attempts"           // always present: publish attempts made
	HeaderFirstAttempt      = Prefix + "first.attempt"      // optional
	HeaderLastAttempt       = Prefix + "last.attempt"       // optional
	HeaderOriginalTopic     = Prefix + "original.topic"     // always present
	HeaderOriginalPartition = Prefix + "original.partition" // always present
	HeaderOriginalOffset    = Prefix + "original.offset"    // always present
	HeaderOriginalTimestamp = Prefix + "original.timestamp" // optional
	HeaderCorrelationID     = event.HeaderDLQCorrelationID  // optional (empty is omitted); Decode reads it back on replay
	HeaderTraceID           = event.HeaderDLQTraceID        // optional; Decode reads it back on replay
	HeaderReplays           = Prefix + "replays"            // always present: times the record was replayed
	// HeaderValueOmitted is set (to the original value's size in bytes)
	// when the value itself was too large for the DLQ topic and was left
	// out; the original coordinates still lead to it.
	HeaderValueOmitted = Prefix + "value.omitted"
	// HeaderOriginalOmitted is set (to their size in bytes) when even
	// without its value the record was too large: its key and original
	// headers were left out too, and only the cxbridge.dlq.* headers remain.
	HeaderOriginalOmitted = Prefix + "original.omitted"
)

// MaxTextBytes bounds the error and http.body headers. Longer texts are cut
// on a UTF-8 boundary.
const MaxTextBytes = 1024

// TimeFormat is the layout of the time headers: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Entry is what a DLQ record says about why and where a record was
// dead-lettered.
type Entry struct {
	Reason event.Reason // event.ReasonUnknown when empty
	// Error is a short description of the failure. It is written to a header
	// as given (cut to MaxTextBytes), so callers must pass only texts that
	// carry no secret: no token, client secret or Authorization header. The
	// cxone package guarantees that for the errors it returns.
	Error    string
	Status   int    // CXone's HTTP status; 0 = none
	Body     string // CXone's response body; cut to MaxTextBytes
	Attempts int    // publish attempts made (0 for records that were never sent)

	FirstAttempt, LastAttempt time.Time // zero = none

	Topic     string    // the original record's topic
	Partition int       // its partition
	Offset    int64     // its offset
	Timestamp time.Time // its timestamp; zero = none

	CorrelationID, TraceID string

	// Replays is how often the record was already replayed from the DLQ:
	// Replays(orig.Headers) for a record that failed again after a replay.
	Replays int
}

// NewEntry returns an Entry for orig with the given reason, its origin
// (topic, partition, offset, timestamp) and the replay count it carries.
func NewEntry(orig kafka.Message, reason event.Reason) Entry {
	return Entry{
		Reason:    reason,
		Topic:     orig.Topic,
		Partition: orig.Partition,
		Offset:    orig.Offset,
		Timestamp: orig.Time,
		Replays:   Replays(orig.Headers),
	}
}

// Record returns the DLQ record for orig. Its Topic is empty (the Writer
// sets it) and its Time is zero (the produce time is used). Key and Value are
// orig's slices, unchanged and not copied: do not modify them until the record
// is written. The original headers are kept in order, except any
// cxbridge.dlq.* headers (a replayed record that fails again gets fresh ones;
// e.Replays carries the count forward), followed by the cxbridge.dlq.*
// headers of e. Empty optional fields are omitted.
func Record(orig kafka.Message, e Entry) kafka.Message {
	hs := make([]kafka.Header, 0, len(orig.Headers)+14)
	for _, h := range orig.Headers {
		if !strings.HasPrefix(h.Key, Prefix) {
			hs = append(hs, h)
		}
	}
	add := func(k, v string) { hs = append(hs, kafka.Header{Key: k, Value: []byte(v)}) }
	addTime := func(k string, t time.Time) {
		if !t.IsZero() {
			add(k, FormatTime(t))
		}
	}
	reason := e.Reason
	if reason == "" {
		reason = event.ReasonUnknown
	}
	add(HeaderReason, string(reason))
	if e.Error != "" {
		add(HeaderError, Truncate(e.Error, MaxTextBytes))
	}
	if e.Status != 0 {
		add(HeaderHTTPStatus, strconv.Itoa(e.Status))
	}
	if e.Body != "" {
		add(HeaderHTTPBody, Truncate(e.Body, MaxTextBytes))
	}
	add(HeaderAttempts, strconv.Itoa(e.Attempts))
	addTime(HeaderFirstAttempt, e.FirstAttempt)
	addTime(HeaderLastAttempt, e.LastAttempt)
	add(HeaderOriginalTopic, e.Topic)
	add(HeaderOriginalPartition, strconv.Itoa(e.Partition))
	add(HeaderOriginalOffset, strconv.FormatInt(e.Offset, 10))
	addTime(HeaderOriginalTimestamp, e.Timestamp)
	if e.CorrelationID != "" {
		add(HeaderCorrelationID, e.CorrelationID)
	}
	if e.TraceID != "" {
		add(HeaderTraceID, e.TraceID)
	}
	add(HeaderReplays, strconv.Itoa(e.Replays))
	return kafka.Message{Key: orig.Key, Value: orig.Value, Headers: hs}
}

// Parse reads the cxbridge.dlq.* headers of a record. ok is false when there
// is no cxbridge.dlq.reason header (the record is not a DLQ record). An error
// names each header whose value is malformed; the Entry then holds every field
// that could be read. When a header repeats, the last one counts. Unknown
// cxbridge.dlq.* headers are ignored.
func Parse(headers []kafka.Header) (Entry, bool, error) {
	var (
		e    Entry
		ok   bool
		errs []error
	)
	bad := func(h kafka.Header, err error) {
		errs = append(errs, fmt.Errorf("dlq: header %s: invalid value %s: %w", h.Key, quote(h.Value), err))
	}
	integer := func(h kafka.Header, dst *int) {
		n, err := strconv.Atoi(string(h.Value))
		if err != nil {
			bad(h, errors.Unwrap(err))
			return
		}
		*dst = n
	}
	timestamp := func(h kafka.Header, dst *time.Time) {
		t, err := ParseTime(string(h.Value))
		if err != nil {
			bad(h, err)
			return
		}
		*dst = t
	}
	for _, h := range headers {
		if !strings.HasPrefix(h.Key, Prefix) {
			continue
		}
		switch h.Key {
		case HeaderReason:
			ok = true
			e.Reason = event.Reason(h.Value)
		case HeaderError:
			e.Error = string(h.Value)
		case HeaderHTTPStatus:
			integer(h, &e.Status)
		case HeaderHTTPBody:
			e.Body = string(h.Value)
		case HeaderAttempts:
			integer(h, &e.Attempts)
		case HeaderFirstAttempt:
			timestamp(h, &e.FirstAttempt)
		case HeaderLastAttempt:
			timestamp(h, &e.LastAttempt)
		case HeaderOriginalTopic:
			e.Topic = string(h.Value)
		case HeaderOriginalPartition:
			integer(h, &e.Partition)
		case HeaderOriginalOffset:
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil {
				bad(h, errors.Unwrap(err))
				continue
			}
			e.Offset = n
		case HeaderOriginalTimestamp:
			timestamp(h, &e.Timestamp)
		case HeaderCorrelationID:
			e.CorrelationID = string(h.Value)
		case HeaderTraceID:
			e.TraceID = string(h.Value)
		case HeaderReplays:
			integer(h, &e.Replays)
		}
	}
	if !ok {
		return Entry{}, false, nil
	}
	return e, true, errors.Join(errs...)
}

// Replays returns the cxbridge.dlq.replays count of a record: 0 when the
// header is absent or malformed.
func Replays(headers []kafka.Header) int {
	n := 0
	for _, h := range headers {
		if h.Key == HeaderReplays {
			v, err := strconv.Atoi(string(h.Value))
			if err != nil || v < 0 {
				v = 0
			}
			n = v
		}
	}
	return n
}

// FormatTime formats t as the time headers do: UTC, RFC 3339, milliseconds.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// ParseTime parses a time header (any RFC 3339 time is accepted) into UTC.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("not an RFC 3339 time")
	}
	return t.UTC(), nil
}

// Truncate returns s cut to at most max bytes without splitting a UTF-8
// encoded character: a multi-byte character that does not fit entirely is
// dropped.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if max <= 0 {
		return ""
	}
	if utf8.RuneStart(s[max]) {
		return s[:max]
	}
	// s[max] continues a character: find where it starts and drop it if it
	// does not end within max. Invalid bytes are cut anywhere.
	for p := max - 1; p >= 0 && p > max-utf8.UTFMax; p-- {
		if utf8.RuneStart(s[p]) {
			if _, size := utf8.DecodeRuneInString(s[p:]); p+size > max {
				return s[:p]
			}
			break
		}
	}
	return s[:max]
}

// quote renders a header value for an error message, shortened.
func quote(v []byte) string {
	const limit = 64
	if len(v) > limit {
		return strconv.Quote(string(v[:limit])) + "…"
	}
	return strconv.Quote(string(v))
}

// WithoutValue returns the DLQ record rec without its value, marked with
// HeaderValueOmitted: the fallback when rec is too large for the DLQ topic,
// so that the record still settles (invariant 7) instead of stalling its
// partition.
func WithoutValue(rec kafka.Message) kafka.Message {
	n := len(rec.Value)
	rec.Value = nil
	hs := make([]kafka.Header, 0, len(rec.Headers)+1)
	hs = append(hs, rec.Headers...)
	rec.Headers = append(hs, kafka.Header{Key: HeaderValueOmitted, Value: []byte(strconv.Itoa(n))})
	return rec
}

// WithoutOriginal returns the DLQ record rec (as Record returns it) with
// nothing of the original record but its coordinates: no value, no key,
// only the cxbridge.dlq.* headers, marked with HeaderValueOmitted and
// HeaderOriginalOmitted (the size of the key and headers left out). It is
// the last fallback, for a record whose key or headers alone exceed the DLQ
// topic's limit: the record still settles (invariant 7), and its
// coordinates lead to it.
func WithoutOriginal(rec kafka.Message) kafka.Message {
	dropped := len(rec.Key)
	hs := make([]kafka.Header, 0, 16)
	for _, h := range rec.Headers {
		if strings.HasPrefix(h.Key, Prefix) {
			hs = append(hs, h)
		} else {
			dropped += len(h.Key) + len(h.Value)
		}
	}
	n := len(rec.Value)
	hs = append(hs, kafka.Header{Key: HeaderValueOmitted, Value: []byte(strconv.Itoa(n))},
		kafka.Header{Key: HeaderOriginalOmitted, Value: []byte(strconv.Itoa(dropped))})
	return kafka.Message{Headers: hs}
}
