package event

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is what Decode needs of a Kafka record besides its value.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Headers   []Header
}

// Record headers read when the event has no correlationId or traceId.
const (
	HeaderCorrelationID = "X-Correlation-ID"
	HeaderTraceID       = "X-Trace-ID"
	HeaderTraceparent   = "traceparent" // W3C Trace Context
	// The ids a DLQ record carries (package dlq writes them), read so that a
	// replayed record keeps its identity (design invariant 6).
	HeaderDLQCorrelationID = "cxbridge.dlq.correlation.id"
	HeaderDLQTraceID       = "cxbridge.dlq.trace.id"
)

// Namespaces of the ids derived from a record's coordinates (UUID v5), so
// that the same record gets the same ids on every attempt, restart,
// rebalance and replay.
var (
	correlationNS = uuid.MustParse("6f0e4c1a-3b8e-5d7a-9c2e-1f4b8a6d0c31")
	traceNS       = uuid.MustParse("0b7d9e2f-6a14-5c83-8e5f-2d9a7c4b1e60")
)

// Decode parses and validates a record value as an event and fills
// correlationId and traceId when the event lacks them, as RecordIDs does.
//
// Errors are *Error.
func Decode(value []byte, rec Record) (*Event, error) {
	ev, err := Parse(value)
	if err != nil {
		return nil, err
	}
	fillIDs(&ev.CorrelationID, &ev.TraceID, rec)
	return ev, nil
}

// DecodeObject is Decode for an event given as its decoded top-level
// members (see FromObject).
func DecodeObject(members map[string]any, encode func(any) ([]byte, error), rec Record) (*Event, error) {
	ev, err := FromObject(members, encode)
	if err != nil {
		return nil, err
	}
	fillIDs(&ev.CorrelationID, &ev.TraceID, rec)
	return ev, nil
}

// RecordIDs returns the ids of a record whose value carries none (or cannot
// be read): from its headers (X-Correlation-ID, then the DLQ's
// cxbridge.dlq.correlation.id; traceparent, then X-Trace-ID, then
// cxbridge.dlq.trace.id), else derived deterministically from topic,
// partition and offset. A replayed DLQ record so keeps the ids it had.
func RecordIDs(rec Record) (correlationID, traceID string) {
	fillIDs(&correlationID, &traceID, rec)
	return correlationID, traceID
}

// BadRecordIDs returns the ids of a record that failed Decode: the value's
// own correlationId and traceId when the value is a JSON object that
// carries them as valid ids (an event breaking another rule, or too
// large), so that operators find a dead letter by the id its producer
// gave; else what RecordIDs returns. It never fails: an id that cannot be
// read is left to the headers and the derived id.
func BadRecordIDs(value []byte, rec Record) (correlationID, traceID string) {
	if utf8.Valid(value) && json.Valid(value) {
		if fields, ok := knownMembers(value); ok {
			id := stringRule{maxChars: MaxIDChars, header: true}
			correlationID, _ = stringField(fields, "correlationId", id)
			traceID, _ = stringField(fields, "traceId", id)
		}
	}
	fillIDs(&correlationID, &traceID, rec)
	return correlationID, traceID
}

func fillIDs(corr, trace *string, rec Record) {
	if *corr == "" {
		*corr = headerID(rec.Headers, HeaderCorrelationID)
	}
	if *corr == "" {
		*corr = headerID(rec.Headers, HeaderDLQCorrelationID)
	}
	if *trace == "" {
		*trace = traceparentID(headerValue(rec.Headers, HeaderTraceparent))
	}
	if *trace == "" {
		*trace = headerID(rec.Headers, HeaderTraceID)
	}
	if *trace == "" {
		*trace = headerID(rec.Headers, HeaderDLQTraceID)
	}
	if *corr == "" {
		*corr = DerivedID(correlationNS, rec)
	}
	if *trace == "" {
		*trace = DerivedID(traceNS, rec)
	}
}

// DerivedCorrelationID is the correlation id of a record that carries none.
func DerivedCorrelationID(rec Record) string { return DerivedID(correlationNS, rec) }

// DerivedID is a UUID v5 of the record's coordinates in namespace ns.
func DerivedID(ns uuid.UUID, rec Record) string {
	name := make([]byte, 0, len(rec.Topic)+32)
	name = append(name, rec.Topic...)
	name = append(name, '/')
	name = strconv.AppendInt(name, int64(rec.Partition), 10)
	name = append(name, '/')
	name = strconv.AppendInt(name, rec.Offset, 10)
	return uuid.NewSHA1(ns, name).String()
}

func headerValue(hs []Header, key string) string {
	for i := len(hs) - 1; i >= 0; i-- { // the last one wins, as in HTTP
		if strings.EqualFold(hs[i].Key, key) {
			return string(hs[i].Value)
		}
	}
	return ""
}

// headerID returns a header's value if it can be used as an id.
func headerID(hs []Header, key string) string {
	v := strings.TrimSpace(headerValue(hs, key))
	if v == "" || len(v) > MaxIDChars || !headerSafe(v) || !utf8.ValidString(v) {
		return ""
	}
	return v
}

// traceparentID returns the trace-id of a W3C traceparent
// ("<version>-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>"), or ""
// when it is malformed, as Trace Context § 3.2 and § 4.3 tell a receiver to
// ignore it: lowercase hex only, version ff invalid, version 00 exactly 55
// characters, later versions longer only after a '-', trace-id and
// parent-id not all zeros.
func traceparentID(tp string) string {
	tp = strings.TrimSpace(tp)
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	version, id, parent, flags := tp[0:2], tp[3:35], tp[36:52], tp[53:55]
	switch {
	case !lowerHex(version) || version == "ff":
		return ""
	case version == "00" && len(tp) != 55:
		return ""
	case len(tp) > 55 && tp[55] != '-':
		return ""
	case !lowerHex(id) || allZeros(id) || !lowerHex(parent) || allZeros(parent) || !lowerHex(flags):
		return ""
	}
	return id
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZeros(s string) bool {
	return strings.Trim(s, "0") == ""
}
