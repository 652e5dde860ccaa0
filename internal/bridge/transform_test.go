package bridge

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/transform"
)

// The README's example program.
const readmeProgram = `{eventType: ("order." + .status), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}`

func mustCompile(t *testing.T, src string, opts ...transform.Option) *transform.Program {
	t.Helper()
	p, err := transform.Compile(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// With a program, the event published is the program's output, and
// nothing is dead-lettered.
func TestProcessorTransformPublishesMappedEvent(t *testing.T) {
	t.Parallel()
	var got *event.Event
	pub := &fakePublisher{t: t, publish: func(ev *event.Event) delivery.Outcome {
		got = ev
		return delivery.Outcome{Result: delivery.Accepted, Status: 200}
	}}
	w := &fakeDLQ{}
	p := NewProcessor(pub, w, nil, ProcessorHooks{}).WithTransform(mustCompile(t, readmeProgram))
	msg := record([]byte(`{"orderId":"o-7","status":"paid","total":12.50}`))
	if !p.Process(context.Background(), msg) {
		t.Fatal("not settled")
	}
	if len(w.msgs) != 0 {
		t.Fatalf("%d dead letters, want none", len(w.msgs))
	}
	// record's timestamp is 2026-11-28T10:00:00Z.
	if got == nil || got.EventType != "order.paid" || got.Source != "shop" || got.Timestamp != "2026-11-28T10:00:00.000Z" ||
		got.CorrelationID != "o-7" || string(got.Data) != `{"orderId":"o-7","status":"paid","total":12.50}` {
		t.Fatalf("published %+v (data %s)", got, got.Data)
	}
	if got.TraceID == "" {
		t.Fatal("no trace id filled in")
	}
}

// A record the program cannot map goes to the DLQ with the reason package
// transform gives, the error, the ORIGINAL value (a replay maps it again)
// and the record's own ids; its output breaking a rule is invalid_event;
// a program that runs too long is transform_failed, not a stalled record.
func TestProcessorTransformDeadLetters(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		program string
		opts    []transform.Option
		value   string
		reason  event.Reason
		errText string
	}{
		{"program errors", readmeProgram, nil, `{"orderId":"o-1","status":7}`, event.ReasonTransformFailed, "cannot add"},
		{"no value", `empty`, nil, `{"orderId":"o-1"}`, event.ReasonTransformFailed, "no value"},
		{"two values", `., .`, nil, `{"orderId":"o-1"}`, event.ReasonTransformFailed, "2 values"},
		{"not an object", `.orderId`, nil, `{"orderId":"o-1"}`, event.ReasonTransformFailed, "want an object"},
		{"runs too long", `last(range(1e15))`, []transform.Option{transform.WithTimeout(50 * time.Millisecond)}, `{}`, event.ReasonTransformFailed, "stopped after"},
		{"not JSON", readmeProgram, nil, `order o-1 shipped`, event.ReasonInvalidJSON, "not valid JSON"},
		{"output breaks a rule", readmeProgram, nil, `{"orderId":"o-1","status":"` + strings.Repeat("s", 130) + `"}`, event.ReasonInvalidEvent, "eventType"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var dead []string
			w := &fakeDLQ{}
			p := NewProcessor(&fakePublisher{t: t}, w, nil, ProcessorHooks{DeadLettered: func(r string) { dead = append(dead, r) }}).
				WithTransform(mustCompile(t, tc.program, tc.opts...))
			msg := record([]byte(tc.value))
			if !p.Process(context.Background(), msg) {
				t.Fatal("not settled")
			}
			d, e := w.only(t)
			if string(d.Value) != tc.value || string(d.Key) != "k" {
				t.Fatalf("DLQ key/value %q %q, want the original %q %q", d.Key, d.Value, "k", tc.value)
			}
			wantCorr, wantTrace := event.BadRecordIDs(msg.Value, recordOf(msg))
			if e.Reason != tc.reason || !strings.Contains(e.Error, tc.errText) || e.CorrelationID != wantCorr || e.TraceID != wantTrace ||
				e.Topic != "cxone.events" || e.Partition != 3 || e.Offset != 42 {
				t.Fatalf("entry %+v; want reason %s, error containing %q, ids %s %s", e, tc.reason, tc.errText, wantCorr, wantTrace)
			}
			if len(dead) != 1 || dead[0] != string(tc.reason) {
				t.Fatalf("DeadLettered hook saw %v, want [%s]", dead, tc.reason)
			}
		})
	}
}

// A record whose program is stopped because ctx ended (shutdown, a revoked
// partition) was not judged: it stays unsettled, nothing is dead-lettered
// and nothing published.
func TestProcessorTransformContextEndedLeavesUnsettled(t *testing.T) {
	t.Parallel()
	w := &fakeDLQ{}
	var settledHook int
	p := NewProcessor(&fakePublisher{t: t}, w, nil, ProcessorHooks{Settled: func(string, time.Time) { settledHook++ }}).
		WithTransform(mustCompile(t, `last(range(1e15))`)) // runs until stopped (DefaultTimeout 1 s)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if p.Process(ctx, record([]byte(`{}`))) {
		t.Fatal("settled although ctx ended during the program")
	}
	if el := time.Since(start); el >= transform.DefaultTimeout {
		t.Fatalf("Process returned after %v: the program was not stopped by ctx but by its own timeout", el)
	}
	if len(w.msgs) != 0 || settledHook != 0 {
		t.Fatalf("%d dead letters and %d settled, want none", len(w.msgs), settledHook)
	}
}

// Without a program a record that is not an event is dead-lettered as
// before (the default: no mapping).
func TestProcessorWithoutTransformDecodesValue(t *testing.T) {
	t.Parallel()
	w := &fakeDLQ{}
	p := NewProcessor(&fakePublisher{t: t}, w, nil, ProcessorHooks{}).WithTransform(nil)
	msg := record([]byte(`{"orderId":"o-7","status":"paid"}`))
	if !p.Process(context.Background(), msg) {
		t.Fatal("not settled")
	}
	_, e := w.only(t)
	if e.Reason != event.ReasonInvalidEvent {
		t.Fatalf("reason %s, want invalid_event", e.Reason)
	}
}

// scriptedMapper answers Event with its answers in turn, then with its last.
type scriptedMapper struct {
	answers []func() (*event.Event, error)
	calls   int
}

func (m *scriptedMapper) Event(context.Context, []byte, transform.Input) (*event.Event, error) {
	i := min(m.calls, len(m.answers)-1)
	m.calls++
	return m.answers[i]()
}

// A record the program fails on is run once more before it is judged: a
// run stopped by the program's 1 s bound because the host was starved of
// CPU (256 records at once on 2 cores can keep one from it for seconds)
// does not dead-letter a good record; a program that fails again does; a
// value that is not JSON is not run again, nor is one mapped to an invalid
// event; ctx ending during the second run leaves the record unsettled.
func TestProcessorTransformRunsAFailureTwice(t *testing.T) {
	t.Parallel()
	good, err := mustCompile(t, readmeProgram).Event(context.Background(), []byte(`{"orderId":"o-7","status":"paid"}`), transform.Input{Timestamp: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := func() (*event.Event, error) {
		return nil, &transform.Error{Reason: transform.ReasonTransformFailed, Msg: "program stopped after running 1s"}
	}
	notJSON := func() (*event.Event, error) {
		return nil, &transform.Error{Reason: transform.ReasonInvalidJSON, Msg: "record value is not valid JSON"}
	}
	invalid := func() (*event.Event, error) {
		return event.FromObject(map[string]any{"eventType": "order.paid", "source": "shop"}, nil) // no timestamp
	}
	mapped := func() (*event.Event, error) { return good, nil }
	ended := func() (*event.Event, error) { return nil, context.Canceled }
	cases := []struct {
		name      string
		answers   []func() (*event.Event, error)
		settled   bool
		published bool
		reason    event.Reason // "": not dead-lettered
		calls     int
	}{
		{"stopped once, then mapped", []func() (*event.Event, error){stopped, mapped}, true, true, "", 2},
		{"stopped twice", []func() (*event.Event, error){stopped, stopped}, true, false, event.ReasonTransformFailed, 2},
		{"not JSON", []func() (*event.Event, error){notJSON, mapped}, true, false, event.ReasonInvalidJSON, 1},
		{"mapped to an invalid event", []func() (*event.Event, error){invalid, mapped}, true, false, event.ReasonInvalidEvent, 1},
		{"ctx ends during the first run", []func() (*event.Event, error){ended, mapped}, false, false, "", 1},
		{"ctx ends during the second run", []func() (*event.Event, error){stopped, ended}, false, false, "", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			published := false
			pub := &fakePublisher{t: t, publish: func(*event.Event) delivery.Outcome {
				published = true
				return delivery.Outcome{Result: delivery.Accepted, Status: 200}
			}}
			w := &fakeDLQ{}
			m := &scriptedMapper{answers: tc.answers}
			p := NewProcessor(pub, w, nil, ProcessorHooks{})
			p.transform = m
			if got := p.Process(context.Background(), record([]byte(`{"orderId":"o-7","status":"paid"}`))); got != tc.settled {
				t.Fatalf("settled = %v, want %v", got, tc.settled)
			}
			if published != tc.published || m.calls != tc.calls {
				t.Fatalf("published %v after %d runs, want %v after %d", published, m.calls, tc.published, tc.calls)
			}
			if tc.reason == "" {
				if len(w.msgs) != 0 {
					t.Fatalf("%d dead letters, want none", len(w.msgs))
				}
				return
			}
			if _, e := w.only(t); e.Reason != tc.reason {
				t.Fatalf("reason %s, want %s", e.Reason, tc.reason)
			}
		})
	}
}
