package dlq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/time/rate"
)

// Filter selects DLQ records (for dlq replay and dlq inspect). Partition,
// FromOffset and ToOffset are -1 for no bound (AllRecords has them so); the
// other zero fields select everything.
//
// Partition and the offsets are the DLQ topic's: a record's place in the DLQ,
// which inspect prints and which the offset bounds only make sense with.
// OriginalPartitions selects by the partition of the input topic the record
// was dead-lettered from. Since/Until bound when a record was dead-lettered
// (the DLQ record's time); RecordSince/RecordUntil bound the original
// record's own timestamp (its cxbridge.dlq.original.timestamp header), and a
// record without one is not selected by such a bound.
type Filter struct {
	Reasons            []string // event.Reason values, as an operator types them
	Statuses           []int
	Partition          int   // DLQ partition; -1 for all
	FromOffset         int64 // DLQ offsets, inclusive; -1 for no bound
	ToOffset           int64
	Since              time.Time // when dead-lettered (the DLQ record's time), inclusive
	Until              time.Time // exclusive
	OriginalPartitions []int     // the input topic's partitions; empty for all
	RecordSince        time.Time // the original record's timestamp, inclusive
	RecordUntil        time.Time // exclusive
}

// AllRecords is the Filter that selects every record.
func AllRecords() Filter { return Filter{Partition: -1, FromOffset: -1, ToOffset: -1} }

// Match reports whether the record m with entry e is selected.
func (f Filter) Match(m kafka.Message, e Entry) bool {
	switch {
	case len(f.Reasons) > 0 && !slices.Contains(f.Reasons, string(e.Reason)),
		len(f.Statuses) > 0 && !slices.Contains(f.Statuses, e.Status),
		f.Partition >= 0 && m.Partition != f.Partition,
		f.FromOffset >= 0 && m.Offset < f.FromOffset,
		f.ToOffset >= 0 && m.Offset > f.ToOffset,
		!f.Since.IsZero() && m.Time.Before(f.Since),
		!f.Until.IsZero() && !m.Time.Before(f.Until),
		len(f.OriginalPartitions) > 0 && !slices.Contains(f.OriginalPartitions, e.Partition),
		!f.RecordSince.IsZero() && (e.Timestamp.IsZero() || e.Timestamp.Before(f.RecordSince)),
		!f.RecordUntil.IsZero() && (e.Timestamp.IsZero() || !e.Timestamp.Before(f.RecordUntil)):
		return false
	}
	return true
}

// needsEntry reports whether f selects by what only a DLQ record's headers
// say: a record that is not a DLQ record (or whose headers are malformed)
// is then not selected.
func (f Filter) needsEntry() bool {
	return len(f.Reasons) > 0 || len(f.Statuses) > 0 || len(f.OriginalPartitions) > 0 ||
		!f.RecordSince.IsZero() || !f.RecordUntil.IsZero()
}

// Key is a short, stable name for the filter and target, used to name the
// replay's consumer group: each distinct replay keeps its own position.
func (f Filter) Key(to string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "to=%s;r=%v;s=%v;p=%d;o=%d-%d;t=%d-%d", to, f.Reasons, f.Statuses, f.Partition, f.FromOffset, f.ToOffset, f.Since.Unix(), f.Until.Unix())
	// Later fields only when set, so that the filters that existed before
	// them keep their group (and their position) across an upgrade.
	if len(f.OriginalPartitions) > 0 {
		fmt.Fprintf(&b, ";op=%v", f.OriginalPartitions)
	}
	if !f.RecordSince.IsZero() || !f.RecordUntil.IsZero() {
		fmt.Fprintf(&b, ";rt=%d-%d", f.RecordSince.Unix(), f.RecordUntil.Unix())
	}
	var h uint32 = 2166136261 // FNV-1a
	for _, c := range []byte(b.String()) {
		h = (h ^ uint32(c)) * 16777619
	}
	return strconv.FormatUint(uint64(h), 36)
}

// ReplayConfig configures Replay.
type ReplayConfig struct {
	Reader ReaderConfig // the DLQ topic
	Group  string       // the replay's consumer group: its committed offsets are where a run starts
	To     string       // topic the records go back to; "" for each record's own (Topics)
	// Topics, when To is "", are the topics records may go back to (the
	// worker's input topics): each record goes to its original topic (its
	// cxbridge.dlq.original.topic header), and one from a topic not
	// listed is refused.
	Topics     []string
	Filter     Filter
	Max        int     // most records to replay, 0 for all
	MaxReplays int     // records replayed this many times already are refused
	DryRun     bool    // write nothing, commit nothing
	Rate       float64 // records/s, 0 for no limit
	// Partitions is the partition count the target topic (each of them,
	// with Topics) had when the records were dead-lettered (a DLQ record
	// does not carry it); 0 takes it as the current count. See Placement.
	Partitions int
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
	// Topic is the target topic and TopicPartitions its partition count
	// (with several targets, Topic lists them and TopicPartitions sums
	// their counts; Targets has each one's).
	Topic           string         `json:"topic"`
	TopicPartitions int            `json:"topic_partitions"`
	Targets         map[string]int `json:"targets"`
	// ByPartition counts the replayed records by target partition (of
	// the one target; with several, ByTopic and ByTopicPartition tell
	// them apart), and ByPlacement by how the partition was chosen (the
	// Placed* values).
	ByPartition      map[int]int64            `json:"by_partition"`
	ByTopic          map[string]int64         `json:"by_topic"`
	ByTopicPartition map[string]map[int]int64 `json:"by_topic_partition"`
	ByPlacement      map[string]int64         `json:"by_placement"`
	// Keyed counts the replayed records with a key, and AtJavaPartition
	// those of them whose original partition is where Kafka's default
	// partitioner puts their key at the current count. Fewer than all
	// means the input topic's producers use another partitioner, or the
	// count changed since they were dead-lettered (then say so with
	// Partitions).
	Keyed           int64 `json:"keyed"`
	AtJavaPartition int64 `json:"at_java_partition"`
}

var errMaxReached = errors.New("max reached")

// Replay re-produces selected DLQ records to cfg.To (or each to its own
// original topic, one of cfg.Topics): key, value and original
// headers unchanged, the correlation and trace ids kept (in their
// cxbridge.dlq.* headers, which the worker reads back), cxbridge.dlq.replays
// incremented. It starts where cfg.Group's committed offsets say and commits
// after each written batch, so a second run does not replay the same
// records again. Records replayed MaxReplays times already, or dead-lettered
// without their value, are refused. Each record goes to the partition of
// cfg.To that Placement chooses (its original one while the partition count
// is unchanged, else the Java default partitioner's for its key). A dry run
// (DryRun) reads and counts the same, and writes and commits nothing.
func Replay(ctx context.Context, cfg ReplayConfig) (ReplayStats, error) {
	targets := []string{cfg.To}
	if cfg.To == "" {
		targets = cfg.Topics
	}
	st := ReplayStats{Refused: map[string]int64{}, Topic: strings.Join(targets, ","), Targets: map[string]int{},
		ByPartition: map[int]int64{}, ByTopic: map[string]int64{}, ByTopicPartition: map[string]map[int]int64{}, ByPlacement: map[string]int64{}}
	if len(cfg.Reader.Brokers) == 0 || cfg.Reader.Topic == "" || len(targets) == 0 || slices.Contains(targets, "") {
		return st, errors.New("dlq: replay needs brokers, the DLQ topic and a target topic")
	}
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
	places := map[string]Placement{}
	for _, to := range targets {
		targetParts, err := topicPartitions(ctx, addr, t, to)
		if err != nil {
			return st, fmt.Errorf("dlq: replay target: %w", err)
		}
		st.Targets[to] = len(targetParts)
		st.TopicPartitions += len(targetParts)
		if cfg.Partitions > len(targetParts) {
			return st, fmt.Errorf("dlq: replay target %s has %d partitions, fewer than the %d it is said to have had (Kafka never removes partitions)",
				to, len(targetParts), cfg.Partitions)
		}
		places[to] = Placement{Now: len(targetParts), Then: cfg.Partitions}
	}
	// Each record's topic and partition are chosen before it is written;
	// the Writer's balancer only reads the partition back.
	w := &kafka.Writer{Addr: addr, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, Transport: t,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition })}
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
		case cfg.To == "" && !slices.Contains(cfg.Topics, e.Topic):
			st.Refused["original topic not an input topic"]++
		default:
			if cfg.Max > 0 && st.Replayed >= int64(cfg.Max) {
				return errMaxReached
			}
			if lim != nil {
				if err := lim.Wait(ctx); err != nil {
					return err
				}
			}
			to := cmp.Or(cfg.To, e.Topic)
			place := places[to]
			p, how := place.Partition(m.Key, e.Partition)
			if !cfg.DryRun {
				out := replayMessage(m, e)
				out.Topic, out.Partition = to, p
				if err := w.WriteMessages(ctx, out); err != nil {
					return fmt.Errorf("replay to %s partition %d: %w", to, p, err)
				}
			}
			st.Replayed++
			if len(targets) == 1 {
				st.ByPartition[p]++
			}
			st.ByTopic[to]++
			if st.ByTopicPartition[to] == nil {
				st.ByTopicPartition[to] = map[int]int64{}
			}
			st.ByTopicPartition[to][p]++
			st.ByPlacement[how]++
			if m.Key != nil {
				st.Keyed++
				if JavaPartition(m.Key, place.Now) == e.Partition {
					st.AtJavaPartition++
				}
			}
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
	return committedOf(ctx, c, group, topic, parts)
}

// committedOf is committed for the topic's partitions parts.
func committedOf(ctx context.Context, c *kafka.Client, group, topic string, parts []int) (map[int]int64, error) {
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

// ReplayGroup is a consumer group's position in the DLQ topic: what a replay
// run with that group has gone through.
type ReplayGroup struct {
	Group     string        `json:"group"`
	Committed map[int]int64 `json:"committed"` // DLQ partition → the offset the next run starts at
	// Remaining counts the DLQ records at or after the committed offsets
	// (of the partitions the group has committed on): what its next run
	// scans.
	Remaining int64 `json:"remaining"`
}

// ReplayGroups lists the consumer groups that have committed offsets on the
// DLQ topic cfg.Topic: the replay groups (named cxbridge-dlq-replay-… unless
// --replay-group named them), sorted by name.
func ReplayGroups(ctx context.Context, cfg ReaderConfig) ([]ReplayGroup, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, errors.New("dlq: listing replay groups needs brokers and the DLQ topic")
	}
	c, t, done := newClient(cfg)
	defer done()
	res, err := c.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		return nil, fmt.Errorf("dlq: list groups: %w", err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("dlq: list groups: %w", res.Error)
	}
	parts, end, err := partitionEnds(ctx, c, t, cfg.Topic)
	if err != nil {
		return nil, err
	}
	var out []ReplayGroup
	for _, g := range res.Groups {
		off, err := committedOf(ctx, c, g.GroupID, cfg.Topic, parts)
		if err != nil {
			return nil, err
		}
		if len(off) == 0 {
			continue
		}
		out = append(out, ReplayGroup{Group: g.GroupID, Committed: off, Remaining: remaining(off, end)})
	}
	slices.SortFunc(out, func(a, b ReplayGroup) int { return strings.Compare(a.Group, b.Group) })
	return out, nil
}

// ResetReplayGroup deletes group's committed offsets on the DLQ topic
// cfg.Topic, so that the next replay with that group starts from the
// beginning of the DLQ topic again. Its offsets on other topics are left
// alone: resetting the worker's own group by mistake moves nothing of its
// input. It returns the group's position before the reset; a group without
// offsets on the DLQ topic is an error (a mistyped name resets nothing).
// With dryRun it only returns the position.
func ResetReplayGroup(ctx context.Context, cfg ReaderConfig, group string, dryRun bool) (ReplayGroup, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || group == "" {
		return ReplayGroup{}, errors.New("dlq: resetting a replay group needs brokers, the DLQ topic and the group")
	}
	c, t, done := newClient(cfg)
	defer done()
	parts, end, err := partitionEnds(ctx, c, t, cfg.Topic)
	if err != nil {
		return ReplayGroup{}, err
	}
	off, err := committedOf(ctx, c, group, cfg.Topic, parts)
	if err != nil {
		return ReplayGroup{}, err
	}
	rg := ReplayGroup{Group: group, Committed: off}
	if len(off) == 0 {
		return rg, fmt.Errorf("dlq: group %s has no committed offsets on topic %s", group, cfg.Topic)
	}
	rg.Remaining = remaining(off, end)
	if dryRun {
		return rg, nil
	}
	res, err := c.OffsetDelete(ctx, &kafka.OffsetDeleteRequest{GroupID: group, Topics: map[string][]int{cfg.Topic: slices.Sorted(maps.Keys(off))}})
	if err != nil {
		return rg, fmt.Errorf("dlq: reset group %s: %w", group, err)
	}
	if res.Error != nil {
		return rg, fmt.Errorf("dlq: reset group %s: %w", group, res.Error)
	}
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return rg, fmt.Errorf("dlq: reset group %s partition %d: %w", group, p.Partition, p.Error)
			}
		}
	}
	return rg, nil
}

// remaining is how many records lie between the committed offsets off and
// the partitions' ends.
func remaining(off, end map[int]int64) int64 {
	var n int64
	for p, o := range off {
		n += max(end[p]-o, 0)
	}
	return n
}

// newClient returns a client for cfg's brokers and a function that releases
// the Transport it made (none when cfg brings its own).
func newClient(cfg ReaderConfig) (*kafka.Client, *kafka.Transport, func()) {
	t := cfg.Transport
	done := func() {}
	if t == nil {
		t = &kafka.Transport{}
		done = t.CloseIdleConnections
	}
	return &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second, Transport: t}, t, done
}
