package dlq

import (
	"context"
	"time"

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

// Inspect reads the whole DLQ topic and summarises it. show, when set, is
// called with each record and its entry (ok false when its headers are not
// a DLQ record's). It joins no group and commits nothing.
func Inspect(ctx context.Context, cfg ReaderConfig, show func(m kafka.Message, e Entry, ok bool)) (Summary, error) {
	s := Summary{Topic: cfg.Topic, ByReason: map[string]int64{}, ByStatus: map[int]int64{}, ByHour: map[string]int64{}}
	err := Scan(ctx, cfg, func(m kafka.Message) error {
		s.Records++
		if s.First.IsZero() || m.Time.Before(s.First) {
			s.First = m.Time
		}
		if m.Time.After(s.Last) {
			s.Last = m.Time
		}
		e, ok, err := Parse(m.Headers)
		ok = ok && err == nil
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
		if show != nil {
			show(m, e, ok)
		}
		return nil
	})
	return s, err
}
