package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/transform"
)

func init() {
	register("transform", "try a --transform program on sample records (stdin or --file): print each resulting event or its DLQ reason", runTransform)
}

// headerFlags collects repeated --header k=v.
type headerFlags []event.Header

func (h *headerFlags) String() string {
	parts := make([]string, len(*h))
	for i, x := range *h {
		parts[i] = x.Key + "=" + string(x.Value)
	}
	return strings.Join(parts, ",")
}

func (h *headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	*h = append(*h, event.Header{Key: k, Value: []byte(v)})
	return nil
}

func runTransform(ctx context.Context, args []string, env Env) error {
	fs := config.NewFlagSet("transform")
	var tf config.Transform // the worker's own settings: one meaning per name
	tf.Register(fs)
	file := fs.String("file", "", "file of sample records: one JSON document, or one record per line (default: standard input)")
	key := fs.String("record-key", "", "record key the program sees as $key")
	topic := fs.String("record-topic", "cxone.events", "topic the program sees as $topic")
	partition := fs.Int("record-partition", 0, "partition the program sees as $partition")
	offset := fs.Int64("record-offset", 0, "offset of the first record ($offset); each next record gets the next one")
	ts := fs.String("record-timestamp", "", "record timestamp, RFC 3339 ($timestamp in UTC; default: now)")
	var hdrs headerFlags
	fs.Var(&hdrs, "record-header", "record header key=value the program sees in $headers (repeatable)")
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}

	var p config.Problems
	if !tf.Set() {
		p.Add("transform", "a program is required (or --transform-file)")
	} else {
		tf.Validate(&p) // both given, an unreadable file, a program that does not compile
	}
	stamp := time.Now()
	if *ts != "" {
		t, err := time.Parse(time.RFC3339Nano, *ts)
		if err != nil {
			p.Add("record-timestamp", "want RFC 3339 like 2024-01-02T03:04:05.678Z, got %q", *ts)
		}
		stamp = t
	}
	if *partition < 0 {
		p.Add("record-partition", "must not be negative, got %d", *partition)
	}
	if *offset < 0 {
		p.Add("record-offset", "must not be negative, got %d", *offset)
	}
	if err := p.Err(); err != nil {
		return err
	}
	prog, err := tf.Load()
	if err != nil {
		return err
	}

	var input []byte
	if *file != "" {
		input, err = os.ReadFile(*file)
		if err != nil {
			p.Add("file", "cannot read the records: %v", err)
			return p.Err()
		}
	} else if input, err = io.ReadAll(os.Stdin); err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	records := splitRecords(input)
	if len(records) == 0 {
		return fmt.Errorf("no records in %s", inputName(*file))
	}

	failed := 0
	for i, value := range records {
		in := transform.Input{
			Record:    event.Record{Topic: *topic, Partition: *partition, Offset: *offset + int64(i), Headers: hdrs},
			Key:       []byte(*key),
			Timestamp: stamp,
		}
		body, reason, err := mapRecord(ctx, prog, value, in)
		if err != nil && reason == "" { // ctx ended
			return err
		}
		if err != nil {
			failed++
			fmt.Fprintf(env.Stdout, "dlq reason=%s: %v\n", reason, err)
			continue
		}
		fmt.Fprintf(env.Stdout, "%s\n", body)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d records would go to the DLQ", failed, len(records))
	}
	return nil
}

// mapRecord does to one record value what the worker does before publishing:
// transform, then validate the result as an event. It returns the
// publish body, or the DLQ reason and error; a reason "" with an error means
// ctx ended.
func mapRecord(ctx context.Context, prog *transform.Program, value []byte, in transform.Input) (body []byte, reason string, err error) {
	ev, err := prog.Event(ctx, value, in)
	if te, ok := errors.AsType[*transform.Error](err); ok {
		return nil, string(te.Reason), err
	}
	if err == nil {
		body, err = ev.Body()
	}
	if ee, ok := errors.AsType[*event.Error](err); ok {
		return nil, string(ee.Reason), err
	}
	if err != nil {
		return nil, "", err // ctx's
	}
	return body, "", nil
}

// splitRecords returns the records of input: the whole input when it is one
// JSON document (which may span lines), else each line that is not blank.
func splitRecords(input []byte) [][]byte {
	if trimmed := bytes.TrimSpace(input); len(trimmed) > 0 && json.Valid(trimmed) {
		return [][]byte{trimmed}
	}
	var records [][]byte
	for line := range bytes.Lines(input) {
		line = bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(line)) > 0 {
			records = append(records, line)
		}
	}
	return records
}

func inputName(file string) string {
	if file == "" {
		return "standard input"
	}
	return file
}
