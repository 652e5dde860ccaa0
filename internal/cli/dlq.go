package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"github.com/segmentio/kafka-go"
	"golang.org/x/term"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/dlq"
)

func init() {
	register("dlq", "inspect the DLQ topic (dlq inspect) or replay records from it (dlq replay)", runDLQ)
}

func runDLQ(ctx context.Context, args []string, env Env) error {
	if len(args) > 0 {
		switch args[0] {
		case "inspect":
			return runDLQInspect(ctx, args[1:], env)
		case "replay":
			return runDLQReplay(ctx, args[1:], env)
		}
	}
	fmt.Fprintln(env.Stderr, "Usage: cxbridge dlq inspect [flags] | cxbridge dlq replay [flags]   (--help lists the flags)")
	return errUsage
}

func readerConfig(k *config.Kafka) (dlq.ReaderConfig, error) {
	tr, err := k.Transport()
	if err != nil {
		return dlq.ReaderConfig{}, err
	}
	return dlq.ReaderConfig{Brokers: k.BrokerList(), Topic: k.DLQTopic, Transport: tr}, nil
}

func runDLQInspect(ctx context.Context, args []string, env Env) error {
	var k config.Kafka
	fs := config.NewFlagSet("dlq inspect")
	k.Register(fs)
	ff := registerFilterFlags(fs, "list")
	show := fs.Int("show", 0, "list the first N selected records (DLQ order: partition by partition, by offset) instead of the summary")
	tail := fs.Int("tail", 0, "list the N newest selected records, newest first (by when they were dead-lettered), instead of the summary")
	follow := fs.Bool("follow", false, "after the records listed (all new ones without --tail/--show), keep listing selected records as they are dead-lettered, until interrupted")
	asJSON := fs.Bool("json", false, "print JSON: the summary as one object; records (with --show, --tail, --follow) as one object per line, with full key, value (UTF-8 as text, else base64), headers and DLQ fields")
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	var p config.Problems
	k.Validate(&p)
	f := ff.filter(&p)
	if *show < 0 {
		p.Add("show", "must not be negative, got %d", *show)
	}
	if *tail < 0 {
		p.Add("tail", "must not be negative, got %d", *tail)
	}
	if *show > 0 && *tail > 0 {
		p.Add("show", "--show (the first records) and --tail (the newest) exclude each other")
	}
	if *show > 0 && *follow {
		p.Add("follow", "goes with --tail, not --show")
	}
	if err := p.Err(); err != nil {
		return err
	}
	rc, err := readerConfig(&k)
	if err != nil {
		return err
	}
	lc := dlq.ListConfig{Reader: rc, Filter: f, Tail: *tail, Follow: *follow}
	if *show == 0 && *tail == 0 && !*follow {
		sum := dlq.NewSummary(k.DLQTopic)
		if err := dlq.List(ctx, lc, func(m kafka.Message, e dlq.Entry, ok bool) error { sum.Add(m, e, ok); return nil }); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(env.Stdout).Encode(struct {
				Summary dlq.Summary `json:"summary"`
			}{sum})
		}
		printSummary(env.Stdout, sum)
		return nil
	}
	errShown := errors.New("shown")
	n := 0
	enc := json.NewEncoder(env.Stdout)
	err = dlq.List(ctx, lc, func(m kafka.Message, e dlq.Entry, ok bool) error {
		if *show > 0 && n >= *show {
			return errShown
		}
		n++
		if *asJSON {
			return enc.Encode(dlq.View(m))
		}
		printRecord(env.Stdout, m, e, ok)
		return nil
	})
	if errors.Is(err, errShown) {
		err = nil
	}
	return err
}

func printSummary(w io.Writer, sum dlq.Summary) {
	fmt.Fprintf(w, "DLQ topic %s: %d records", sum.Topic, sum.Records)
	if sum.Records > 0 {
		fmt.Fprintf(w, " dead-lettered between %s and %s", sum.First.UTC().Format(time.RFC3339), sum.Last.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, " (%d are replays, %d unreadable)\n", sum.Replayed, sum.Unreadable)
	printCounts(w, "by reason", sum.ByReason)
	byStatus := map[string]int64{}
	for s, n := range sum.ByStatus {
		key := strconv.Itoa(s)
		if s == 0 {
			key = "none"
		}
		byStatus[key] = n
	}
	printCounts(w, "by HTTP status", byStatus)
	printCounts(w, "by hour (UTC)", sum.ByHour)
}

// printRecord prints a DLQ record in a few short lines: where it is in the
// DLQ and when it was dead-lettered, why, where it came from; its error and
// value cut short (--json shows everything).
func printRecord(w io.Writer, m kafka.Message, e dlq.Entry, ok bool) {
	const cut = 160
	fmt.Fprintf(w, "%s %d/%d ", m.Time.UTC().Format(time.RFC3339), m.Partition, m.Offset)
	if !ok {
		fmt.Fprintf(w, "(not a DLQ record: no readable %s headers)\n", dlq.Prefix)
	} else {
		fmt.Fprintf(w, "%s", string(e.Reason))
		if e.Status != 0 {
			fmt.Fprintf(w, " %d", e.Status)
		}
		fmt.Fprintf(w, " from %s/%d@%d", e.Topic, e.Partition, e.Offset)
		if e.Replays > 0 {
			fmt.Fprintf(w, " replays=%d", e.Replays)
		}
		if e.CorrelationID != "" {
			fmt.Fprintf(w, " corr=%s", e.CorrelationID)
		}
		fmt.Fprintln(w)
		if e.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", shorten(e.Error, cut))
		}
	}
	key := "null"
	if m.Key != nil {
		key = strconv.Quote(shorten(string(m.Key), 64))
	}
	switch {
	case m.Value == nil:
		fmt.Fprintf(w, "  key=%s value: null\n", key)
	case !utf8.Valid(m.Value):
		fmt.Fprintf(w, "  key=%s value: %d bytes, not UTF-8 (--json shows them in base64)\n", key, len(m.Value))
	default:
		fmt.Fprintf(w, "  key=%s value: %s\n", key, shorten(string(m.Value), cut))
	}
}

// shorten cuts s to about max bytes, on one line.
func shorten(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= max {
		return s
	}
	return dlq.Truncate(s, max) + "…"
}

// filterFlags are the record selection flags of dlq inspect and dlq replay.
type filterFlags struct {
	reasons, statuses, origPartitions, since, until, recordSince, recordUntil *string
	partition                                                                 *int
	fromOffset, toOffset                                                      *int64
}

// registerFilterFlags defines the filter flags; verb ("list", "replay")
// starts their help.
func registerFilterFlags(fs *config.FlagSet, verb string) *filterFlags {
	return &filterFlags{
		reasons:        fs.String("reason", "", verb+" only these reasons, comma-separated (e.g. retries_exhausted,rejected)"),
		statuses:       fs.String("status", "", verb+" only these CXone HTTP statuses, comma-separated"),
		partition:      fs.Int("partition", -1, verb+" only this partition of the DLQ topic (-1: all); --from-offset/--to-offset are its offsets"),
		fromOffset:     fs.Int64("from-offset", -1, verb+" only DLQ offsets from this one (-1: no bound)"),
		toOffset:       fs.Int64("to-offset", -1, verb+" only DLQ offsets up to this one, inclusive (-1: no bound)"),
		since:          fs.String("since", "", verb+" only records dead-lettered at or after this RFC 3339 time (the DLQ record's time)"),
		until:          fs.String("until", "", verb+" only records dead-lettered before this RFC 3339 time"),
		origPartitions: fs.String("original-partition", "", verb+" only records dead-lettered from these partitions of the input topic, comma-separated"),
		recordSince:    fs.String("record-since", "", verb+" only records whose own timestamp (the original record's) is at or after this RFC 3339 time"),
		recordUntil:    fs.String("record-until", "", verb+" only records whose own timestamp is before this RFC 3339 time"),
	}
}

func (ff *filterFlags) filter(p *config.Problems) dlq.Filter {
	f := dlq.Filter{Partition: *ff.partition, FromOffset: *ff.fromOffset, ToOffset: *ff.toOffset, Reasons: config.SplitList(*ff.reasons),
		Since: parseTimeFlag(p, "since", *ff.since), Until: parseTimeFlag(p, "until", *ff.until),
		RecordSince: parseTimeFlag(p, "record-since", *ff.recordSince), RecordUntil: parseTimeFlag(p, "record-until", *ff.recordUntil)}
	for _, s := range config.SplitList(*ff.statuses) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 599 {
			p.Add("status", "%q is not an HTTP status", s)
		}
		f.Statuses = append(f.Statuses, n)
	}
	for _, s := range config.SplitList(*ff.origPartitions) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			p.Add("original-partition", "%q is not a partition number", s)
		}
		f.OriginalPartitions = append(f.OriginalPartitions, n)
	}
	if f.Partition < -1 {
		p.Add("partition", "must be a partition number or -1 (all), got %d", f.Partition)
	}
	if f.FromOffset >= 0 && f.ToOffset >= 0 && f.ToOffset < f.FromOffset {
		p.Add("to-offset", "%d is below --from-offset %d", f.ToOffset, f.FromOffset)
	}
	if (f.FromOffset >= 0 || f.ToOffset >= 0) && f.Partition < 0 {
		p.Add("from-offset", "DLQ offsets need --partition (offsets are a partition's)")
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		p.Add("until", "must be after --since")
	}
	if !f.RecordSince.IsZero() && !f.RecordUntil.IsZero() && !f.RecordUntil.After(f.RecordSince) {
		p.Add("record-until", "must be after --record-since")
	}
	return f
}

func printCounts(w io.Writer, title string, m map[string]int64) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(w, "  %-24s %d\n", k, m[k])
	}
}

func runDLQReplay(ctx context.Context, args []string, env Env) error {
	var k config.Kafka
	fs := config.NewFlagSet("dlq replay")
	k.Register(fs)
	ff := registerFilterFlags(fs, "replay")
	to := fs.String("to", "", "topic to replay into (default: --kafka-input-topic; with several input topics, each record's own original topic)")
	maxN := fs.Int("max", 0, "replay at most this many records (0: all)")
	maxReplays := fs.Int("max-replays", 3, "refuse records already replayed this many times")
	execute := fs.Bool("execute", false, "write the records (and commit the replay group); without it the replay is a dry run that writes nothing. Only read from the command line")
	dryRun := fs.Bool("dry-run", false, "deprecated: a dry run is the default; kept so that scripts giving it keep working")
	rateLimit := fs.Float64("rate", 0, "records per second (0: no limit)")
	group := fs.String("replay-group", "", "consumer group that remembers what was replayed (default: cxbridge-dlq-replay-<hash of the filter and target>)")
	partitionsThen := fs.Int("input-partitions", 0, "the target topic's partition count when the records were dead-lettered, if partitions were added since (0: unchanged); records then go where Kafka's default murmur2 partitioner puts their key")
	listGroups := fs.Bool("list-groups", false, "list the replay groups (consumer groups with a position in the DLQ topic) and what each has left, then exit")
	resetGroup := fs.String("reset-group", "", "delete this group's position in the DLQ topic (its other offsets stay), so that its next replay starts over; with --execute, else only shows it")
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	var p config.Problems
	k.Validate(&p)
	f := ff.filter(&p)
	if *maxN < 0 {
		p.Add("max", "must not be negative, got %d", *maxN)
	}
	if *maxReplays < 1 {
		p.Add("max-replays", "must be at least 1, got %d", *maxReplays)
	}
	if *rateLimit < 0 {
		p.Add("rate", "must not be negative, got %g", *rateLimit)
	}
	if *partitionsThen < 0 {
		p.Add("input-partitions", "must not be negative, got %d", *partitionsThen)
	}
	if *execute && *dryRun {
		p.Add("execute", "--execute and --dry-run contradict each other")
	}
	if *execute && !onCommandLine(args, "execute") {
		// ff also reads CXBRIDGE_EXECUTE: a variable left in a shell
		// must not turn every dry run into a replay.
		p.Add("execute", "give --execute on the command line (CXBRIDGE_EXECUTE is not taken)")
	}
	if *listGroups && *resetGroup != "" {
		p.Add("list-groups", "--list-groups and --reset-group exclude each other")
	}
	if err := p.Err(); err != nil {
		return err
	}
	rc, err := readerConfig(&k)
	if err != nil {
		return err
	}
	if *listGroups {
		return printReplayGroups(ctx, env.Stdout, rc)
	}
	if *resetGroup != "" {
		rg, err := dlq.ResetReplayGroup(ctx, rc, *resetGroup, !*execute)
		if err != nil {
			return err
		}
		verb := "would reset (add --execute to do it)"
		if *execute {
			verb = "reset"
		}
		fmt.Fprintf(env.Stdout, "dlq replay: %s group %s: it was at %s on %s, %d records left; its next replay starts at the beginning of %s\n",
			verb, rg.Group, formatOffsets(rg.Committed), k.DLQTopic, rg.Remaining, k.DLQTopic)
		return nil
	}
	target := *to
	if target == "" {
		target = k.InputTopic
	}
	if *group == "" {
		*group = "cxbridge-dlq-replay-" + f.Key(target)
	}
	into := target
	if topics := k.InputTopics(); *to == "" && len(topics) > 1 {
		into = "" // each record back to its own topic, one of topics
	}
	cfg := dlq.ReplayConfig{Reader: rc, Group: *group, To: into, Topics: k.InputTopics(), Filter: f, Max: *maxN, MaxReplays: *maxReplays, DryRun: !*execute,
		Rate: *rateLimit, Partitions: *partitionsThen}
	if f, ok := env.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		var bar *progressbar.ProgressBar
		cfg.Progress = func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(env.Stderr), progressbar.OptionSetDescription("replaying"),
					progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			_ = bar.Set64(done)
		}
	}
	st, err := dlq.Replay(ctx, cfg)
	w := env.Stdout
	verb := "replayed"
	if !*execute {
		verb = "would replay"
		fmt.Fprint(w, "dlq replay: dry run, nothing written (add --execute to replay)\n")
	}
	fmt.Fprintf(w, "dlq replay: %s %d records from %s to %s; scanned %d, skipped by the filter %d", verb, st.Replayed, k.DLQTopic, target, st.Scanned, st.Skipped)
	for _, why := range slices.Sorted(maps.Keys(st.Refused)) {
		fmt.Fprintf(w, ", refused %d (%s)", st.Refused[why], why)
	}
	fmt.Fprintf(w, " [group %s]\n", *group)
	if st.Replayed > 0 {
		for i, topic := range slices.Sorted(maps.Keys(st.ByTopicPartition)) {
			if i > 0 {
				fmt.Fprint(w, "; ")
			}
			by := st.ByTopicPartition[topic]
			fmt.Fprintf(w, "by partition of %s (%d partitions):", topic, st.Targets[topic])
			for _, p := range slices.Sorted(maps.Keys(by)) {
				fmt.Fprintf(w, " %d: %d", p, by[p])
			}
		}
		fmt.Fprint(w, "; placed:")
		for _, how := range slices.Sorted(maps.Keys(st.ByPlacement)) {
			fmt.Fprintf(w, " %d %s", st.ByPlacement[how], how)
		}
		fmt.Fprintln(w)
	}
	if st.ByPlacement[dlq.PlacedOriginal] > 0 && st.AtJavaPartition < st.Keyed {
		fmt.Fprintf(w, "note: %d of %d keyed records are not on the partition Kafka's default partitioner gives their key at %d partitions: "+
			"if partitions were added to %s since they were dead-lettered, give --input-partitions (the count then); "+
			"if its producers use another partitioner, their original partitions are right\n", st.Keyed-st.AtJavaPartition, st.Keyed, st.TopicPartitions, target)
	}
	return err
}

// printReplayGroups lists the replay groups of the DLQ topic.
func printReplayGroups(ctx context.Context, w io.Writer, rc dlq.ReaderConfig) error {
	groups, err := dlq.ReplayGroups(ctx, rc)
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		fmt.Fprintf(w, "no replay groups: no consumer group has a position in %s\n", rc.Topic)
		return nil
	}
	for _, g := range groups {
		fmt.Fprintf(w, "%s  %d left  at %s\n", g.Group, g.Remaining, formatOffsets(g.Committed))
	}
	return nil
}

// formatOffsets renders partition → offset as "0:12 1:4".
func formatOffsets(m map[int]int64) string {
	var b strings.Builder
	for i, p := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", p, m[p])
	}
	return b.String()
}

// onCommandLine reports whether the flag name was given in args (not only
// through its environment variable).
func onCommandLine(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// parseTimeFlag reads an optional RFC 3339 time setting.
func parseTimeFlag(p *config.Problems, name, raw string) time.Time {
	if raw == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		p.Add(name, "must be an RFC 3339 time like 2026-11-28T10:00:00Z, got %q", raw)
	}
	return t
}
