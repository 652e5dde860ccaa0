package dlq

import (
	"context"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
)

// Summary describes a DLQ topic: how many records, why, when.
type Summary struct {
	Topic      string           `json:"topic"`
	Records    int64            `json:"records"`
	ByReason   map[string]int64 `json:"by_reason"`
	ByStatus   map[int]int64    `json:"by_http_status"` // 0: no HTTP answer (invalid input, …)
	ByHour     map[string]int64 `json:"by_hour"`        // dead-lettered per UTC hour, "2006-01-02T15"
	Replayed   int64            `json:"replayed"`       // records that are themselves replays
	Unreadable int64            `json:"unreadable"`     // records without valid cxbridge.dlq.* headers
	First      time.Time        `json:"first,omitzero"`
	Last       time.Time        `json:"last,omitzero"`
}

// NewSummary returns the empty Summary of topic.
func NewSummary(topic string) Summary {
	return Summary{Topic: topic, ByReason: map[string]int64{}, ByStatus: map[int]int64{}, ByHour: map[string]int64{}}
}

// Add counts the record m with its entry e (ok false when m is not a
// readable DLQ record): List(ctx, cfg, …s.Add…) summarises what a filter
// selects.
func (s *Summary) Add(m kafka.Message, e Entry, ok bool) {
	s.Records++
	if s.First.IsZero() || m.Time.Before(s.First) {
		s.First = m.Time
	}
	if m.Time.After(s.Last) {
		s.Last = m.Time
	}
	if !ok {
		s.Unreadable++
	} else {
		s.ByReason[string(e.Reason)]++
		s.ByStatus[e.Status]++
		if e.Replays > 0 {
			s.Replayed++
		}
	}
	if !m.Time.IsZero() {
		s.ByHour[m.Time.UTC().Format("2006-01-02T15")]++
	}
}

// ListConfig configures List.
type ListConfig struct {
	Reader ReaderConfig
	Filter Filter // AllRecords() for every record
	// Tail, when positive, lists only the Tail newest selected records,
	// newest first: by the time they were dead-lettered (the DLQ record's
	// time), then by DLQ partition and offset. 0 lists every selected
	// record in DLQ order (partition by partition, by offset).
	Tail int
	// Follow, after the existing records (all of them, or the Tail newest),
	// keeps listing the selected records dead-lettered since, in the order
	// they arrive, until ctx ends (which is not an error). With Follow and
	// no Tail only the new records are listed.
	Follow bool
	Poll   time.Duration // Follow's poll interval; 0 for 500 ms
}

// List calls fn with the DLQ records cfg.Filter selects, with their entry
// (ok false when a record is not a DLQ record, or its headers are
// malformed: such records are listed only when the filter selects nothing by
// what the headers say). It joins no group and commits nothing. An error
// from fn stops it and is returned.
func List(ctx context.Context, cfg ListConfig, fn func(m kafka.Message, e Entry, ok bool) error) error {
	if cfg.Reader.Transport == nil {
		cfg.Reader.Transport = &kafka.Transport{}
		defer cfg.Reader.Transport.CloseIdleConnections()
	}
	type rec struct {
		m  kafka.Message
		e  Entry
		ok bool
	}
	selected := func(m kafka.Message) (rec, bool) {
		e, ok, err := Parse(m.Headers)
		ok = ok && err == nil
		if !ok && cfg.Filter.needsEntry() {
			return rec{}, false
		}
		return rec{m, e, ok}, cfg.Filter.Match(m, e)
	}
	var (
		from map[int]int64
		err  error
	)
	switch {
	case cfg.Tail > 0:
		newest := func(a, b rec) int {
			if c := b.m.Time.Compare(a.m.Time); c != 0 {
				return c
			}
			if a.m.Partition != b.m.Partition {
				return a.m.Partition - b.m.Partition
			}
			return int(b.m.Offset - a.m.Offset)
		}
		var kept []rec
		from = map[int]int64{}
		err = Scan(ctx, cfg.Reader, func(m kafka.Message) error {
			from[m.Partition] = m.Offset + 1
			if r, ok := selected(m); ok {
				kept = append(kept, r)
				if len(kept) >= 2*cfg.Tail+64 {
					slices.SortFunc(kept, newest)
					kept = kept[:cfg.Tail]
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.SortFunc(kept, newest)
		for _, r := range kept[:min(cfg.Tail, len(kept))] {
			if err := fn(r.m, r.e, r.ok); err != nil {
				return err
			}
		}
		// Follow goes on after the records scanned (from each partition's
		// first offset where the scan saw none): nothing written since the
		// scan began is missed or listed twice.
	case cfg.Follow:
		if from, err = EndOffsets(ctx, cfg.Reader); err != nil {
			return err
		}
	default:
		return Scan(ctx, cfg.Reader, func(m kafka.Message) error {
			if r, ok := selected(m); ok {
				return fn(r.m, r.e, r.ok)
			}
			return nil
		})
	}
	if !cfg.Follow {
		return nil
	}
	rc := cfg.Reader
	rc.From = from
	return Follow(ctx, rc, cfg.Poll, func(m kafka.Message) error {
		if r, ok := selected(m); ok {
			return fn(r.m, r.e, r.ok)
		}
		return nil
	})
}

// RecordView is a DLQ record as dlq inspect --json prints it: one JSON
// object per record, with everything the record holds.
type RecordView struct {
	Partition int       `json:"partition"` // in the DLQ topic
	Offset    int64     `json:"offset"`    // in the DLQ topic
	Time      time.Time `json:"time"`      // when it was dead-lettered (the DLQ record's time)
	// Key and Value are the original bytes: as a string when they are
	// valid UTF-8 (KeyEncoding/ValueEncoding "utf8"), else base64
	// ("base64"); null for a null key or value.
	Key           *string `json:"key"`
	KeyEncoding   string  `json:"key_encoding,omitempty"`
	Value         *string `json:"value"`
	ValueEncoding string  `json:"value_encoding,omitempty"`
	// Headers are the original record's headers, in order (the
	// cxbridge.dlq.* headers are decoded into DLQ instead).
	Headers []HeaderView `json:"headers"`
	// DLQ is null when the record has no cxbridge.dlq.reason header.
	DLQ *EntryView `json:"dlq"`
	// Malformed names the cxbridge.dlq.* headers that could not be read.
	Malformed string `json:"malformed,omitempty"`
}

// HeaderView is a header of RecordView; Value as RecordView's Value.
type HeaderView struct {
	Key      string  `json:"key"`
	Value    *string `json:"value"`
	Encoding string  `json:"encoding,omitempty"`
}

// EntryView is an Entry with JSON names, and the omission markers.
type EntryView struct {
	Reason            string     `json:"reason"`
	Error             string     `json:"error,omitempty"`
	HTTPStatus        int        `json:"http_status,omitempty"`
	HTTPBody          string     `json:"http_body,omitempty"`
	Attempts          int        `json:"attempts"`
	FirstAttempt      *time.Time `json:"first_attempt,omitempty"`
	LastAttempt       *time.Time `json:"last_attempt,omitempty"`
	OriginalTopic     string     `json:"original_topic"`
	OriginalPartition int        `json:"original_partition"`
	OriginalOffset    int64      `json:"original_offset"`
	OriginalTimestamp *time.Time `json:"original_timestamp,omitempty"`
	CorrelationID     string     `json:"correlation_id,omitempty"`
	TraceID           string     `json:"trace_id,omitempty"`
	Replays           int        `json:"replays"`
	// ValueOmitted and OriginalOmitted are the sizes in bytes of what was
	// left out of a record too large for the DLQ topic; 0 when nothing was.
	ValueOmitted    int `json:"value_omitted,omitempty"`
	OriginalOmitted int `json:"original_omitted,omitempty"`
}

// View returns the RecordView of the DLQ record m.
func View(m kafka.Message) RecordView {
	v := RecordView{Partition: m.Partition, Offset: m.Offset, Time: m.Time, Headers: []HeaderView{}}
	v.Key, v.KeyEncoding = encodeBytes(m.Key)
	v.Value, v.ValueEncoding = encodeBytes(m.Value)
	e, ok, err := Parse(m.Headers)
	if err != nil {
		v.Malformed = err.Error()
	}
	ev := EntryView{}
	for _, h := range m.Headers {
		if !strings.HasPrefix(h.Key, Prefix) {
			hv := HeaderView{Key: h.Key}
			hv.Value, hv.Encoding = encodeBytes(h.Value)
			v.Headers = append(v.Headers, hv)
			continue
		}
		switch h.Key {
		case HeaderValueOmitted:
			ev.ValueOmitted, _ = strconv.Atoi(string(h.Value))
		case HeaderOriginalOmitted:
			ev.OriginalOmitted, _ = strconv.Atoi(string(h.Value))
		}
	}
	if !ok {
		return v
	}
	timePtr := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	ev.Reason, ev.Error, ev.HTTPStatus, ev.HTTPBody, ev.Attempts = string(e.Reason), e.Error, e.Status, e.Body, e.Attempts
	ev.FirstAttempt, ev.LastAttempt, ev.OriginalTimestamp = timePtr(e.FirstAttempt), timePtr(e.LastAttempt), timePtr(e.Timestamp)
	ev.OriginalTopic, ev.OriginalPartition, ev.OriginalOffset = e.Topic, e.Partition, e.Offset
	ev.CorrelationID, ev.TraceID, ev.Replays = e.CorrelationID, e.TraceID, e.Replays
	v.DLQ = &ev
	return v
}

// encodeBytes renders b for JSON: a string when it is valid UTF-8, else
// base64; nil stays nil.
func encodeBytes(b []byte) (*string, string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, "utf8"
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s, "base64"
}
