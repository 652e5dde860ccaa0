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
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// dlqFixture is an embedded broker with the shipped topic names (6
// partitions each) and three DLQ records: rejected (422), invalid_json,
// rejected (422), from cxone.events partition 0 offsets 0-2.
type dlqFixture struct {
	b   *devstack.Broker
	ctx context.Context
	t   *testing.T
}

func newDLQFixture(t *testing.T) *dlqFixture {
	t.Helper()
	b, err := devstack.StartBroker(devstack.BrokerConfig{Addr: "127.0.0.1:0", Topics: []string{"cxone.events", "cxone.events.dlq"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	fx := &dlqFixture{b: b, ctx: ctx, t: t}
	for i, reason := range []string{"rejected", "invalid_json", "rejected"} {
		fx.deadLetter(i, reason)
	}
	return fx
}

// deadLetter writes the DLQ record of cxone.events 0/i, keyed k<i>.
func (fx *dlqFixture) deadLetter(i int, reason string) {
	fx.t.Helper()
	w, err := dlq.NewWriter(dlq.WriterConfig{Brokers: fx.b.Addrs, Topic: "cxone.events.dlq"})
	if err != nil {
		fx.t.Fatal(err)
	}
	defer w.Close()
	orig := kafka.Message{Topic: "cxone.events", Partition: 0, Offset: int64(i), Key: []byte{'k', byte('0' + i)}, Value: []byte("v")}
	e := dlq.NewEntry(orig, event.Reason(reason))
	e.CorrelationID = "corr-" + string(rune('0'+i))
	if reason == "rejected" {
		e.Status = 422
	}
	if err := w.Write(fx.ctx, dlq.Record(orig, e)); err != nil {
		fx.t.Fatal(err)
	}
}

func (fx *dlqFixture) run(args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := Run(fx.ctx, append(args, "--kafka-brokers="+fx.b.Addrs[0]), &out, &errb)
	return code, out.String() + errb.String()
}

// inputRecords returns the records on cxone.events.
func (fx *dlqFixture) inputRecords() []kafka.Message {
	fx.t.Helper()
	var input []kafka.Message
	if err := dlq.Scan(fx.ctx, dlq.ReaderConfig{Brokers: fx.b.Addrs, Topic: "cxone.events"}, func(m kafka.Message) error {
		input = append(input, m)
		return nil
	}); err != nil {
		fx.t.Fatal(err)
	}
	return input
}

// jsonLines decodes one JSON object per line.
func jsonLines(t *testing.T, out string) []dlq.RecordView {
	t.Helper()
	var vs []dlq.RecordView
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var v dlq.RecordView
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("not a JSON line: %q: %v\n%s", line, err, out)
		}
		vs = append(vs, v)
	}
	return vs
}

// dlq inspect: the summary by default (of the selected records with a
// filter), records with --show/--tail, one JSON object per record with
// --json, and bad filters stop it naming the flag.
func TestDLQInspect(t *testing.T) {
	fx := newDLQFixture(t)

	code, out := fx.run("dlq", "inspect")
	if code != 0 || !strings.Contains(out, "3 records") || !strings.Contains(out, "rejected") || !strings.Contains(out, "invalid_json") {
		t.Fatalf("summary: %d %s", code, out)
	}
	code, out = fx.run("dlq", "inspect", "--json", "--reason", "rejected")
	var sum struct{ Summary dlq.Summary }
	if err := json.Unmarshal([]byte(out), &sum); code != 0 || err != nil || sum.Summary.Records != 2 || sum.Summary.ByStatus[422] != 2 {
		t.Fatalf("summary of rejected, JSON: %d %v %s", code, err, out)
	}

	// --tail: newest first, whole records in JSON.
	code, out = fx.run("dlq", "inspect", "--tail", "2", "--json")
	vs := jsonLines(t, out)
	if code != 0 || len(vs) != 2 || vs[0].DLQ == nil || vs[0].DLQ.OriginalOffset != 2 || vs[1].DLQ.OriginalOffset != 1 ||
		vs[0].DLQ.Reason != "rejected" || vs[0].DLQ.HTTPStatus != 422 || *vs[0].Value != "v" || *vs[0].Key != "k2" || vs[0].DLQ.CorrelationID != "corr-2" {
		t.Fatalf("--tail 2 --json: %d %s", code, out)
	}
	if vs[0].Time.Before(vs[1].Time) {
		t.Fatalf("--tail is not newest first: %s", out)
	}
	code, out = fx.run("dlq", "inspect", "--tail", "5", "--json", "--status", "422")
	if vs := jsonLines(t, out); code != 0 || len(vs) != 2 || vs[0].DLQ.OriginalOffset != 2 || vs[1].DLQ.OriginalOffset != 0 {
		t.Fatalf("--tail 5 --status 422: %d %s", code, out)
	}
	code, out = fx.run("dlq", "inspect", "--json", "--original-partition", "1", "--show", "10")
	if code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("--original-partition 1 selects nothing: %d %q", code, out)
	}

	// Text: short lines per record, not the summary.
	code, out = fx.run("dlq", "inspect", "--show", "1", "--reason", "invalid_json")
	if code != 0 || !strings.Contains(out, "invalid_json from cxone.events/0@1") || !strings.Contains(out, `key="k1" value: v`) ||
		strings.Contains(out, "by reason") || strings.Count(out, "\n") > 3 {
		t.Fatalf("--show 1 text: %d %s", code, out)
	}

	for _, bad := range [][]string{
		{"--status", "999"}, {"--tail", "-1"}, {"--from-offset", "1"}, {"--since", "yesterday"},
		{"--show", "1", "--tail", "1"}, {"--original-partition", "x"}, {"--record-since", "2026-12-02T00:00:00Z", "--record-until", "2026-12-01T00:00:00Z"},
	} {
		flag := strings.TrimPrefix(bad[len(bad)-2], "--")
		if bad[0] == "--show" {
			flag = "show"
		}
		code, out := fx.run(append([]string{"dlq", "inspect"}, bad...)...)
		if code != ExitConfig || !strings.Contains(out, flag) {
			t.Errorf("dlq inspect %v: code %d, want %d naming %s:\n%s", bad, code, ExitConfig, flag, out)
		}
	}
}

// dlq inspect --follow --tail 1 prints the newest selected record, then the
// selected dead letters as they come, and exits 0 when interrupted.
func TestDLQInspectFollow(t *testing.T) {
	fx := newDLQFixture(t)
	ctx, cancel := context.WithCancel(fx.ctx)
	defer cancel()
	var out testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"dlq", "inspect", "--follow", "--tail", "1", "--json", "--reason", "rejected", "--kafka-brokers=" + fx.b.Addrs[0]}, &out, &out)
	}()
	waitOut := func(what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("%q not printed within 15 s:\n%s", what, out.String())
			}
			select {
			case code := <-done:
				t.Fatalf("dlq inspect --follow ended (code %d):\n%s", code, out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	// The newest existing rejected record first (--tail 1): once it is
	// printed the follow reads on from the end of what it scanned.
	waitOut(`"original_offset":2`)
	fx.deadLetter(7, "invalid_json")
	fx.deadLetter(8, "rejected")
	waitOut(`"original_offset":8`)
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("--follow after interrupt: code %d\n%s", code, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--follow did not end within 10 s of the interrupt")
	}
	if s := out.String(); strings.Contains(s, `"original_offset":7`) || strings.Contains(s, `"original_offset":0`) || strings.Count(s, "\n") != 2 {
		t.Fatalf("want the newest rejected record, then the new one, and nothing else:\n%s", s)
	}
}

// dlq replay is a dry run unless --execute is given: the dry run counts per
// target partition and writes nothing; --execute writes once; the replay
// groups are listed and reset.
func TestDLQReplay(t *testing.T) {
	fx := newDLQFixture(t)

	code, out := fx.run("dlq", "replay", "--reason", "rejected")
	if code != 0 || !strings.Contains(out, "dry run, nothing written") || !strings.Contains(out, "would replay 2 records") ||
		!strings.Contains(out, "by partition of cxone.events (6 partitions): 0: 2; placed: 2 original") {
		t.Fatalf("dry run: %d %s", code, out)
	}
	if n := len(fx.inputRecords()); n != 0 {
		t.Fatalf("the dry run wrote %d records", n)
	}
	if code, out := fx.run("dlq", "replay", "--reason", "rejected", "--dry-run"); code != 0 || !strings.Contains(out, "would replay 2 records") {
		t.Fatalf("--dry-run (deprecated, still accepted): %d %s", code, out)
	}
	if n := len(fx.inputRecords()); n != 0 {
		t.Fatalf("--dry-run wrote %d records", n)
	}
	t.Setenv("CXBRIDGE_EXECUTE", "true")
	if code, out := fx.run("dlq", "replay", "--reason", "rejected"); code != ExitConfig || !strings.Contains(out, "execute") {
		t.Fatalf("CXBRIDGE_EXECUTE alone: %d %s", code, out)
	}
	t.Setenv("CXBRIDGE_EXECUTE", "")
	if n := len(fx.inputRecords()); n != 0 {
		t.Fatalf("CXBRIDGE_EXECUTE wrote %d records", n)
	}

	if code, out := fx.run("dlq", "replay", "--reason", "rejected", "--execute"); code != 0 || !strings.Contains(out, "replayed 2 records") ||
		strings.Contains(out, "dry run") {
		t.Fatalf("replay: %d %s", code, out)
	}
	if code, out := fx.run("dlq", "replay", "--reason", "rejected", "--execute"); code != 0 || !strings.Contains(out, "replayed 0 records") {
		t.Fatalf("second replay: %d %s", code, out)
	}
	input := fx.inputRecords()
	if len(input) != 2 {
		t.Fatalf("%d records on the input topic, want 2", len(input))
	}
	for _, m := range input {
		if m.Partition != 0 {
			t.Errorf("%s replayed to partition %d, its original is 0", m.Key, m.Partition)
		}
	}

	// The replay group: listed, reset (a dry run first), replayed again.
	group := "cxbridge-dlq-replay-" + dlq.Filter{Reasons: []string{"rejected"}, Partition: -1, FromOffset: -1, ToOffset: -1}.Key("cxone.events")
	code, out = fx.run("dlq", "replay", "--list-groups")
	if code != 0 || !strings.Contains(out, group+"  0 left") {
		t.Fatalf("--list-groups: %d %s", code, out)
	}
	if code, out := fx.run("dlq", "replay", "--reset-group", group); code != 0 || !strings.Contains(out, "would reset") {
		t.Fatalf("--reset-group without --execute: %d %s", code, out)
	}
	if code, out := fx.run("dlq", "replay", "--reason", "rejected", "--execute"); code != 0 || !strings.Contains(out, "replayed 0 records") {
		t.Fatalf("replay after a dry reset: %d %s", code, out)
	}
	if code, out := fx.run("dlq", "replay", "--reset-group", group, "--execute"); code != 0 || !strings.Contains(out, "reset group "+group) {
		t.Fatalf("--reset-group --execute: %d %s", code, out)
	}
	if code, out := fx.run("dlq", "replay", "--list-groups"); code != 0 || !strings.Contains(out, "no replay groups") {
		t.Fatalf("--list-groups after the reset: %d %s", code, out)
	}
	if code, out := fx.run("dlq", "replay", "--reason", "rejected", "--execute"); code != 0 || !strings.Contains(out, "replayed 2 records") {
		t.Fatalf("replay after the reset: %d %s", code, out)
	}
	if code, out := fx.run("dlq", "replay", "--reset-group", "no-such-group", "--execute"); code != ExitError || !strings.Contains(out, "no committed offsets") {
		t.Fatalf("--reset-group of an unknown group: %d %s", code, out)
	}

	for _, bad := range [][]string{{"--execute", "--dry-run"}, {"--input-partitions", "-1"}, {"--list-groups", "--reset-group", "g"}} {
		code, out := fx.run(append([]string{"dlq", "replay"}, bad...)...)
		if code != ExitConfig || !strings.Contains(out, strings.TrimPrefix(bad[0], "--")) {
			t.Errorf("dlq replay %v: code %d, want %d:\n%s", bad, code, ExitConfig, out)
		}
	}
	if code, _ := fx.run("dlq", "frobnicate"); code != ExitConfig {
		t.Fatalf("unknown dlq subcommand: code %d", code)
	}
}

// With --input-topic listing two topics and no --to, dlq replay puts each
// record back on its own original topic, at its original partition, and
// prints the count per topic.
func TestDLQReplayTwoInputTopics(t *testing.T) {
	fx := newDLQFixture(t)
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&kafka.Client{Addr: kafka.TCP(fx.b.Addrs...), Transport: tr}).CreateTopics(fx.ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: "tickets", NumPartitions: 2, ReplicationFactor: 1}}})
	if err != nil || res.Errors["tickets"] != nil {
		t.Fatalf("creating tickets: %v %v", err, res.Errors)
	}
	w, err := dlq.NewWriter(dlq.WriterConfig{Brokers: fx.b.Addrs, Topic: "cxone.events.dlq"})
	if err != nil {
		t.Fatal(err)
	}
	orig := kafka.Message{Topic: "tickets", Partition: 1, Offset: 7, Key: []byte("t7"), Value: []byte("v")}
	if err := w.Write(fx.ctx, dlq.Record(orig, dlq.NewEntry(orig, event.ReasonRejected))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	code, out := fx.run("dlq", "replay", "--input-topic", "cxone.events,tickets", "--reason", "rejected", "--execute")
	if code != 0 || !strings.Contains(out, "replayed 3 records") ||
		!strings.Contains(out, "by partition of cxone.events (6 partitions): 0: 2; by partition of tickets (2 partitions): 1: 1;") {
		t.Fatalf("replay: %d %s", code, out)
	}
	if n := len(fx.inputRecords()); n != 2 {
		t.Errorf("%d records on cxone.events; want its 2", n)
	}
	var tickets []kafka.Message
	if err := dlq.Scan(fx.ctx, dlq.ReaderConfig{Brokers: fx.b.Addrs, Topic: "tickets"}, func(m kafka.Message) error {
		tickets = append(tickets, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(tickets) != 1 || string(tickets[0].Key) != "t7" || tickets[0].Partition != 1 {
		t.Fatalf("tickets holds %v; want t7 on partition 1", tickets)
	}
}
