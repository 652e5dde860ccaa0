package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/time/rate"
)

// Filter selects DLQ records to replay. Zero fields select everything.
type Filter struct {
	Reasons    []string // event.Reason values, as an operator types them
	Statuses   []int
	Partition  int   // DLQ partition; -1 for all
	FromOffset int64 // DLQ offsets, inclusive; -1 for no bound
	ToOffset   int64
	Since      time.Time // when dead-lettered (the DLQ record's time), inclusive
	Until      time.Time // exclusive
}

// Match reports whether the record m with entry e is selected.
func (f Filter) Match(m kafka.Message, e Entry) bool {
	switch {
	case len(f.Reasons) > 0 && !slices.Contains(f.Reasons, string(e.Reason)),
		len(f.Statuses) > 0 && !slices.Contains(f.Statuses, e.Status),
		f.Partition >= 0 && m.Partition != f.Partition,
		f.FromOffset >= 0 && m.Offset < f.FromOffset,
		f.ToOffset >= 0 && m.Offset > f.ToOffset,
		!f.Since.IsZero() && m.Time.Before(f.Since),
		!f.Until.IsZero() && !m.Time.Before(f.Until):
		return false
	}
	return true
}

// Key is a short, stable name for the filter and target, used to name the
// replay's consumer group: each distinct replay keeps its own position.
func (f Filter) Key(to string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "to=%s;r=%v;s=%v;p=%d;o=%d-%d;t=%d-%d", to, f.Reasons, f.Statuses, f.Partition, f.FromOffset, f.ToOffset, f.Since.Unix(), f.Until.Unix())
	var h uint32 = 2166136261 // FNV-1a
	for _, c := range []byte(b.String()) {
		h = (h ^ uint32(c)) * 16777619
	}
	return strconv.FormatUint(uint64(h), 36)
}

// ReplayConfig configures Replay.
type ReplayConfig struct {
	Reader     ReaderConfig // the DLQ topic
	Group      string       // the replay's consumer group: its committed offsets are where a run starts
	To         string       // topic the records go back to
	Filter     Filter
	Max        int     // most records to replay, 0 for all
	MaxReplays int     // records replayed this many times already are refused
	DryRun     bool    // write nothing, commit nothing
	Rate       float64 // records/s, 0 for no limit
	// Progress, when set, is called with the offsets scanned so far and
	// the total to scan.
	Progress func(done, total int64)
}

// ReplayStats count what a replay did.
type ReplayStats struct {
	Scanned  int64            `json:"scanned"`
	Replayed int64            `json:"replayed"` // written to the target (or would be, in a dry run)
	Skipped  int64            `json:"skipped"`  // not selected by the filter
	Refused  map[string]int64 `json:"refused"`  // selected but not replayable, by why
}

var errMaxReached = errors.New("max reached")

// Replay re-produces selected DLQ records to cfg.To: key, value and original
// headers unchanged, the correlation and trace ids kept (in their
// cxbridge.dlq.* headers, which the worker reads back), cxbridge.dlq.replays
// incremented. It starts where cfg.Group's committed offsets say and commits
// after each written batch, so a second run does not replay the same
// records again. Records replayed MaxReplays times already, or dead-lettered
// without their value, are refused.
func Replay(ctx context.Context, cfg ReplayConfig) (ReplayStats, error) {
	st := ReplayStats{Refused: map[string]int64{}}
	addr := kafka.TCP(cfg.Reader.Brokers...)
	t := cfg.Reader.Transport
	if t == nil {
		t = &kafka.Transport{}
		defer t.CloseIdleConnections()
	}
	client := &kafka.Client{Addr: addr, Timeout: 10 * time.Second, Transport: t}
	from, err := committed(ctx, client, t, cfg.Group, cfg.Reader.Topic)
	if err != nil {
		return st, err
	}
	w := &kafka.Writer{Addr: addr, Topic: cfg.To, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, Transport: t}
	defer w.Close()
	var lim *rate.Limiter
	if cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	var total int64
	rc := cfg.Reader
	rc.Transport = t
	rc.From = from
	rc.Plan = func(n int64) { total = n }
	next := map[int]int64{} // per DLQ partition, the offset after the last handled record
	flush := func() error {
		if cfg.DryRun || len(next) == 0 {
			return nil
		}
		return commit(ctx, client, cfg.Group, cfg.Reader.Topic, next)
	}
	err = Scan(ctx, rc, func(m kafka.Message) error {
		st.Scanned++
		if cfg.Progress != nil {
			cfg.Progress(st.Scanned, total)
		}
		e, ok, perr := Parse(m.Headers)
		switch {
		case !ok || perr != nil:
			st.Refused["not a DLQ record"]++
		case !cfg.Filter.Match(m, e):
			st.Skipped++
		case e.Replays >= cfg.MaxReplays:
			st.Refused["replayed too often"]++
		case hasHeader(m.Headers, HeaderValueOmitted):
			st.Refused["value omitted"]++
		default:
			if cfg.Max > 0 && st.Replayed >= int64(cfg.Max) {
				return errMaxReached
			}
			if lim != nil {
				if err := lim.Wait(ctx); err != nil {
					return err
				}
			}
			if !cfg.DryRun {
				if err := w.WriteMessages(ctx, replayMessage(m, e)); err != nil {
					return fmt.Errorf("replay to %s: %w", cfg.To, err)
				}
			}
			st.Replayed++
		}
		next[m.Partition] = m.Offset + 1
		if st.Scanned%100 == 0 {
			return flush()
		}
		return nil
	})
	if errors.Is(err, errMaxReached) {
		err = nil
	}
	if ferr := flush(); err == nil {
		err = ferr
	}
	return st, err
}

// replayMessage is the record to re-produce: the original key, value and
// headers, the ids kept, the replay count incremented.
func replayMessage(m kafka.Message, e Entry) kafka.Message {
	out := kafka.Message{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		if !strings.HasPrefix(h.Key, Prefix) {
			out.Headers = append(out.Headers, h)
		}
	}
	if e.CorrelationID != "" {
		out.Headers = append(out.Headers, kafka.Header{Key: HeaderCorrelationID, Value: []byte(e.CorrelationID)})
	}
	if e.TraceID != "" {
		out.Headers = append(out.Headers, kafka.Header{Key: HeaderTraceID, Value: []byte(e.TraceID)})
	}
	out.Headers = append(out.Headers, kafka.Header{Key: HeaderReplays, Value: []byte(strconv.Itoa(e.Replays + 1))})
	return out
}

func hasHeader(hs []kafka.Header, key string) bool {
	return slices.ContainsFunc(hs, func(h kafka.Header) bool { return h.Key == key })
}

// committed returns the group's committed offsets of topic (none when the
// group has not committed).
func committed(ctx context.Context, c *kafka.Client, t *kafka.Transport, group, topic string) (map[int]int64, error) {
	parts, err := topicPartitions(ctx, c.Addr, t, topic)
	if err != nil {
		return nil, err
	}
	res, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("dlq: offsets of group %s: %w", group, err)
	}
	out := map[int]int64{}
	if errors.Is(res.Error, kafka.GroupIdNotFound) {
		return out, nil
	}
	if res.Error != nil {
		return nil, fmt.Errorf("dlq: offsets of group %s: %w", group, res.Error)
	}
	for _, p := range res.Topics[topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// commit commits offsets for group without membership (a simple consumer:
// generation -1), as kafka-consumer-groups --reset-offsets does.
func commit(ctx context.Context, c *kafka.Client, group, topic string, offsets map[int]int64) error {
	req := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
	for p, o := range offsets {
		req.Topics[topic] = append(req.Topics[topic], kafka.OffsetCommit{Partition: p, Offset: o})
	}
	res, err := c.OffsetCommit(ctx, req)
	if err != nil {
		return fmt.Errorf("dlq: commit for group %s: %w", group, err)
	}
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return fmt.Errorf("dlq: commit for group %s partition %d: %w", group, p.Partition, p.Error)
			}
		}
	}
	return nil
}
