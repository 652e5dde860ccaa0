package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

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
	show := fs.Int("show", 0, "print the first N records with their headers")
	asJSON := fs.Bool("json", false, "print JSON (the summary, and the records asked for by --show)")
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	var p config.Problems
	k.Validate(&p)
	if *show < 0 {
		p.Add("show", "must not be negative, got %d", *show)
	}
	if err := p.Err(); err != nil {
		return err
	}
	rc, err := readerConfig(&k)
	if err != nil {
		return err
	}
	type shownRecord struct {
		Partition int               `json:"partition"`
		Offset    int64             `json:"offset"`
		Time      time.Time         `json:"time"`
		Key       string            `json:"key"`
		Value     string            `json:"value"`
		Headers   map[string]string `json:"headers"`
	}
	var shown []shownRecord
	sum, err := dlq.Inspect(ctx, rc, func(m kafka.Message, _ dlq.Entry, _ bool) {
		if len(shown) >= *show {
			return
		}
		r := shownRecord{Partition: m.Partition, Offset: m.Offset, Time: m.Time, Key: string(m.Key), Value: dlq.Truncate(string(m.Value), 512), Headers: map[string]string{}}
		for _, h := range m.Headers {
			r.Headers[h.Key] = string(h.Value)
		}
		shown = append(shown, r)
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(struct {
			Summary dlq.Summary   `json:"summary"`
			Records []shownRecord `json:"records,omitempty"`
		}{sum, shown})
	}
	w := env.Stdout
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
	for _, r := range shown {
		fmt.Fprintf(w, "\n%d/%d %s key=%q\n  value: %s\n", r.Partition, r.Offset, r.Time.UTC().Format(time.RFC3339), r.Key, r.Value)
		for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
			fmt.Fprintf(w, "  %s: %s\n", k, r.Headers[k])
		}
	}
	return nil
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
	to := fs.String("to", "", "topic to replay into (default: --input-topic)")
	reasons := fs.String("reason", "", "replay only these reasons, comma-separated (e.g. retries_exhausted,rejected)")
	statuses := fs.String("status", "", "replay only these HTTP statuses, comma-separated")
	partition := fs.Int("partition", -1, "replay only this DLQ partition (-1: all)")
	fromOffset := fs.Int64("from-offset", -1, "replay only DLQ offsets from this one (-1: no bound)")
	toOffset := fs.Int64("to-offset", -1, "replay only DLQ offsets up to this one, inclusive (-1: no bound)")
	since := fs.String("since", "", "replay only records dead-lettered at or after this RFC 3339 time")
	until := fs.String("until", "", "replay only records dead-lettered before this RFC 3339 time")
	maxN := fs.Int("max", 0, "replay at most this many records (0: all)")
	maxReplays := fs.Int("max-replays", 3, "refuse records already replayed this many times")
	dryRun := fs.Bool("dry-run", false, "show what would be replayed; write and commit nothing")
	rateLimit := fs.Float64("rate", 0, "records per second (0: no limit)")
	group := fs.String("replay-group", "", "consumer group that remembers what was replayed (default: cxbridge-dlq-replay-<hash of the filter and target>)")
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	var p config.Problems
	k.Validate(&p)
	f := dlq.Filter{Partition: *partition, FromOffset: *fromOffset, ToOffset: *toOffset, Reasons: splitList(*reasons),
		Since: parseTimeFlag(&p, "since", *since), Until: parseTimeFlag(&p, "until", *until)}
	for _, s := range splitList(*statuses) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 599 {
			p.Add("status", "%q is not an HTTP status", s)
		}
		f.Statuses = append(f.Statuses, n)
	}
	if *maxN < 0 {
		p.Add("max", "must not be negative, got %d", *maxN)
	}
	if *maxReplays < 1 {
		p.Add("max-replays", "must be at least 1, got %d", *maxReplays)
	}
	if *rateLimit < 0 {
		p.Add("rate", "must not be negative, got %g", *rateLimit)
	}
	if err := p.Err(); err != nil {
		return err
	}
	target := *to
	if target == "" {
		target = k.InputTopic
	}
	if *group == "" {
		*group = "cxbridge-dlq-replay-" + f.Key(target)
	}
	rc, err := readerConfig(&k)
	if err != nil {
		return err
	}
	cfg := dlq.ReplayConfig{Reader: rc, Group: *group, To: target, Filter: f, Max: *maxN, MaxReplays: *maxReplays, DryRun: *dryRun, Rate: *rateLimit}
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
	verb := "replayed"
	if *dryRun {
		verb = "would replay"
	}
	fmt.Fprintf(env.Stdout, "dlq replay: %s %d records from %s to %s; scanned %d, skipped by the filter %d", verb, st.Replayed, k.DLQTopic, target, st.Scanned, st.Skipped)
	for _, why := range slices.Sorted(maps.Keys(st.Refused)) {
		fmt.Fprintf(env.Stdout, ", refused %d (%s)", st.Refused[why], why)
	}
	fmt.Fprintf(env.Stdout, " [group %s]\n", *group)
	return err
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

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
