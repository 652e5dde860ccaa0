package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/devstack"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/event"
)

// dlq inspect summarises the DLQ topic; dlq replay puts the records back on
// the input topic once, with their ids, and a second run does nothing.
func TestDLQInspectAndReplay(t *testing.T) {
	b, err := devstack.StartBroker(devstack.BrokerConfig{Addr: "127.0.0.1:0", Topics: []string{"cxone.events", "cxone.events.dlq"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w, err := dlq.NewWriter(dlq.WriterConfig{Brokers: b.Addrs, Topic: "cxone.events.dlq"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, reason := range []string{"rejected", "invalid_json", "rejected"} {
		orig := kafka.Message{Topic: "cxone.events", Partition: 0, Offset: int64(i), Key: []byte{'k', byte('0' + i)}, Value: []byte("v")}
		e := dlq.NewEntry(orig, event.Reason(reason))
		e.CorrelationID = "corr-" + string(rune('0'+i))
		if reason == "rejected" {
			e.Status = 422
		}
		if err := w.Write(ctx, dlq.Record(orig, e)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	brokers := "--kafka-brokers=" + b.Addrs[0]
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Run(ctx, args, &out, &errb)
		return code, out.String() + errb.String()
	}

	code, out := run("dlq", "inspect", brokers, "--json", "--show", "1")
	var got struct {
		Summary dlq.Summary
		Records []json.RawMessage
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("inspect: code %d, %v:\n%s", code, err, out)
	}
	if got.Summary.Records != 3 || got.Summary.ByReason["rejected"] != 2 || got.Summary.ByStatus[422] != 2 || len(got.Records) != 1 {
		t.Fatalf("inspect: %+v", got)
	}
	if code, out := run("dlq", "inspect", brokers); code != 0 || !strings.Contains(out, "3 records") || !strings.Contains(out, "rejected") {
		t.Fatalf("inspect text: %d %s", code, out)
	}

	if code, out := run("dlq", "replay", brokers, "--reason", "rejected", "--dry-run"); code != 0 || !strings.Contains(out, "would replay 2 records") {
		t.Fatalf("dry run: %d %s", code, out)
	}
	if code, out := run("dlq", "replay", brokers, "--reason", "rejected"); code != 0 || !strings.Contains(out, "replayed 2 records") {
		t.Fatalf("replay: %d %s", code, out)
	}
	if code, out := run("dlq", "replay", brokers, "--reason", "rejected"); code != 0 || !strings.Contains(out, "replayed 0 records") {
		t.Fatalf("second replay: %d %s", code, out)
	}
	var input []kafka.Message
	if err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: b.Addrs, Topic: "cxone.events"}, func(m kafka.Message) error {
		input = append(input, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(input) != 2 {
		t.Fatalf("%d records on the input topic, want 2", len(input))
	}
	if code, _ := run("dlq", "frobnicate"); code != ExitConfig {
		t.Fatalf("unknown dlq subcommand: code %d", code)
	}
}
