package dlq

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

var listBase = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// writeAt writes records to the DLQ topic with the partition and time each
// one says (the DLQ record's time is when it was dead-lettered).
func writeAt(t *testing.T, brokers []string, msgs ...kafka.Message) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: dlqTopic, Transport: tr, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition })}
	defer w.Close()
	if err := w.WriteMessages(testCtx(t), msgs...); err != nil {
		t.Fatal(err)
	}
}

// listRecord is the i-th DLQ record of TestList: DLQ partition i%3,
// dead-lettered at listBase+i min, from events partition i%4 with the
// record time listBase-1h+i min; rejected (400) when i is even, else
// retries_exhausted (503); no key for i=3, a value that is not UTF-8 for i=5.
func listRecord(i int) kafka.Message {
	orig := kafka.Message{Topic: "events", Partition: i % 4, Offset: int64(100 + i), Time: listBase.Add(-time.Hour + time.Duration(i)*time.Minute),
		Key: []byte("k" + strconv.Itoa(i)), Value: []byte(`{"n":` + strconv.Itoa(i) + `}`), Headers: []kafka.Header{{Key: "app", Value: []byte("x")}}}
	if i == 3 {
		orig.Key = nil
	}
	if i == 5 {
		orig.Value = []byte{0xff, 0xfe, 0x00}
	}
	e := NewEntry(orig, "rejected")
	e.Status, e.CorrelationID = 400, "corr-"+strconv.Itoa(i)
	if i%2 == 1 {
		e.Reason, e.Status = "retries_exhausted", 503
	}
	m := Record(orig, e)
	m.Partition, m.Time = i%3, listBase.Add(time.Duration(i)*time.Minute)
	return m
}

// origOffset names a listed record: its original offset - 100, or -1 for a
// record that is not a DLQ record.
func origOffset(m kafka.Message) int {
	e, ok, _ := Parse(m.Headers)
	if !ok {
		return -1
	}
	return int(e.Offset - 100)
}

func list(t *testing.T, brokers []string, cfg ListConfig) []int {
	t.Helper()
	cfg.Reader = ReaderConfig{Brokers: brokers, Topic: dlqTopic}
	var got []int
	if err := List(testCtx(t), cfg, func(m kafka.Message, _ Entry, _ bool) error {
		got = append(got, origOffset(m))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// List selects by each filter, and --tail lists the newest first.
func TestList(t *testing.T) {
	_, brokers := newCluster(t)
	var msgs []kafka.Message
	for i := range 12 {
		msgs = append(msgs, listRecord(i))
	}
	// Not a DLQ record: listed only while no filter needs DLQ headers.
	msgs = append(msgs, kafka.Message{Partition: 0, Time: listBase.Add(100 * time.Minute), Value: []byte("stray")})
	writeAt(t, brokers, msgs...)

	with := func(mod func(*Filter)) Filter {
		f := AllRecords()
		mod(&f)
		return f
	}
	at := func(min int) time.Time { return listBase.Add(time.Duration(min) * time.Minute) }
	cases := []struct {
		name string
		cfg  ListConfig
		want []int // in order when Tail is set, else as a set
	}{
		{"all", ListConfig{Filter: AllRecords()}, []int{-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"reason", ListConfig{Filter: with(func(f *Filter) { f.Reasons = []string{"rejected"} })}, []int{0, 2, 4, 6, 8, 10}},
		{"status", ListConfig{Filter: with(func(f *Filter) { f.Statuses = []int{503} })}, []int{1, 3, 5, 7, 9, 11}},
		{"DLQ partition", ListConfig{Filter: with(func(f *Filter) { f.Partition = 1 })}, []int{1, 4, 7, 10}},
		{"original partition", ListConfig{Filter: with(func(f *Filter) { f.OriginalPartitions = []int{2, 3} })}, []int{2, 3, 6, 7, 10, 11}},
		// DLQ partition 0 holds 0, 3, 6, 9 at offsets 0-3, the stray record at 4.
		{"DLQ offsets", ListConfig{Filter: with(func(f *Filter) { f.Partition, f.FromOffset, f.ToOffset = 0, 1, 2 })}, []int{3, 6}},
		{"dead-lettered between", ListConfig{Filter: with(func(f *Filter) { f.Since, f.Until = at(2), at(5) })}, []int{2, 3, 4}},
		{"record time between", ListConfig{Filter: with(func(f *Filter) { f.RecordSince, f.RecordUntil = at(-60+9), at(-60+11) })}, []int{9, 10}},
		{"tail", ListConfig{Filter: AllRecords(), Tail: 3}, []int{-1, 11, 10}},
		{"tail of a filter", ListConfig{Filter: with(func(f *Filter) { f.Reasons = []string{"rejected"} }), Tail: 2}, []int{10, 8}},
		{"tail longer than the topic", ListConfig{Filter: with(func(f *Filter) { f.Statuses = []int{400} }), Tail: 50}, []int{10, 8, 6, 4, 2, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := list(t, brokers, c.cfg)
			if c.cfg.Tail == 0 {
				slices.Sort(got)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("listed %v, want %v", got, c.want)
			}
		})
	}
}

// --follow lists the new selected records as they are dead-lettered and
// ends without error when its context does.
func TestListFollow(t *testing.T) {
	_, brokers := newCluster(t)
	writeAt(t, brokers, listRecord(0), listRecord(1), listRecord(2))
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	got := make(chan int, 16)
	done := make(chan error, 1)
	f := AllRecords()
	f.Reasons = []string{"rejected"}
	go func() {
		done <- List(ctx, ListConfig{Reader: ReaderConfig{Brokers: brokers, Topic: dlqTopic}, Filter: f, Tail: 1, Follow: true, Poll: 20 * time.Millisecond},
			func(m kafka.Message, _ Entry, _ bool) error { got <- origOffset(m); return nil })
	}()
	next := func() int {
		t.Helper()
		select {
		case n := <-got:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("no record listed within 10 s")
			return 0
		}
	}
	if n := next(); n != 2 {
		t.Fatalf("the tail listed %d, want 2", n)
	}
	writeAt(t, brokers, listRecord(7)) // retries_exhausted: not selected
	writeAt(t, brokers, listRecord(8), listRecord(10))
	if a, b := next(), next(); !(a == 8 && b == 10 || a == 10 && b == 8) {
		t.Fatalf("followed %d, %d; want 8 and 10", a, b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("List after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("List did not end within 10 s of its context")
	}
	select {
	case n := <-got:
		t.Fatalf("listed %d, which was not selected", n)
	default:
	}
}

// View shows the whole record: UTF-8 values as text, others as base64, a
// null key as null, the original headers and the decoded DLQ fields.
func TestView(t *testing.T) {
	v := View(listRecord(5))
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	val, _ := base64.StdEncoding.DecodeString(back["value"].(string))
	if back["value_encoding"] != "base64" || !bytes.Equal(val, []byte{0xff, 0xfe, 0x00}) || back["key"] != "k5" || back["key_encoding"] != "utf8" {
		t.Fatalf("key/value: %s", raw)
	}
	d := back["dlq"].(map[string]any)
	if d["reason"] != "retries_exhausted" || d["http_status"] != float64(503) || d["original_topic"] != "events" ||
		d["original_partition"] != float64(1) || d["original_offset"] != float64(105) || d["correlation_id"] != "corr-5" ||
		d["original_timestamp"] != "2026-11-30T11:05:00Z" {
		t.Fatalf("dlq fields: %s", raw)
	}
	if hs := back["headers"].([]any); len(hs) != 1 || hs[0].(map[string]any)["key"] != "app" || hs[0].(map[string]any)["value"] != "x" {
		t.Fatalf("headers: %s", raw)
	}

	v = View(listRecord(3))
	if v.Key != nil || *v.Value != `{"n":3}` || v.ValueEncoding != "utf8" {
		t.Fatalf("null key / UTF-8 value: %+v", v)
	}
	v = View(WithoutValue(listRecord(4)))
	if v.Value != nil || v.DLQ == nil || v.DLQ.ValueOmitted != len(`{"n":4}`) {
		t.Fatalf("omitted value: %+v %+v", v, v.DLQ)
	}
	v = View(kafka.Message{Value: []byte("stray")})
	if v.DLQ != nil || *v.Value != "stray" {
		t.Fatalf("not a DLQ record: %+v", v)
	}
}
