package transform_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/transform"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The README's example, as given there.
const readmeProgram = `{eventType: ("order." + .status), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}`

const sampleOrder = `{"orderId":"o-1001","status":"shipped","total":12.50,"customer":{"id":12345678901234567890,"name":"Ada"},"items":[{"sku":"A-1","qty":2}]}`

var sampleTime = time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.FixedZone("CET", 3600))

func sampleInput() transform.Input {
	return transform.Input{
		Record:    event.Record{Topic: "orders", Partition: 3, Offset: 42},
		Key:       []byte("o-1001"),
		Timestamp: sampleTime,
	}
}

func mustCompile(t testing.TB, program string, opts ...transform.Option) *transform.Program {
	t.Helper()
	p, err := transform.Compile(program, opts...)
	if err != nil {
		t.Fatalf("Compile(%q): %v", program, err)
	}
	return p
}

func TestREADMEExample(t *testing.T) {
	p := mustCompile(t, readmeProgram)
	out, err := p.Apply(context.Background(), []byte(sampleOrder), sampleInput())
	if err != nil {
		t.Fatal(err)
	}
	// Keys come sorted (gojq's encoding); the 20-digit id and 12.50 are
	// written exactly as they came; the timestamp is in UTC.
	const want = `{"correlationId":"o-1001","data":{"customer":{"id":12345678901234567890,"name":"Ada"},"items":[{"qty":2,"sku":"A-1"}],"orderId":"o-1001","status":"shipped","total":12.50},"eventType":"order.shipped","source":"shop","timestamp":"2024-01-02T02:04:05.678Z"}`
	if string(out) != want {
		t.Fatalf("Apply:\n got %s\nwant %s", out, want)
	}
	// The output is an event the decoder takes.
	ev, err := event.Decode(out, sampleInput().Record)
	if err != nil {
		t.Fatalf("event.Decode of the output: %v", err)
	}
	if ev.EventType != "order.shipped" || ev.Source != "shop" || ev.Timestamp != "2024-01-02T02:04:05.678Z" || ev.CorrelationID != "o-1001" {
		t.Fatalf("event: %+v", ev)
	}
	if !strings.Contains(string(ev.Data), `"id":12345678901234567890`) {
		t.Fatalf("event data lost the id's digits: %s", ev.Data)
	}
}

func TestBigIntegers(t *testing.T) {
	p := mustCompile(t, `{id: .id, next: (.id + 1), neg: .neg, same: (.id == 12345678901234567890)}`)
	out, err := p.Apply(context.Background(), []byte(`{"id":12345678901234567890,"neg":-98765432109876543210}`), transform.Input{})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":12345678901234567890,"neg":-98765432109876543210,"next":12345678901234567891,"same":true}`
	if string(out) != want {
		t.Fatalf("got %s, want %s", out, want)
	}
}

func TestVariables(t *testing.T) {
	p := mustCompile(t, `{key: $key, headers: $headers, topic: $topic, partition: $partition, offset: $offset, next: ($offset + 1), timestamp: $timestamp}`)
	in := transform.Input{
		Record: event.Record{
			Topic: "tickets", Partition: 7, Offset: 1<<40 + 1,
			Headers: []event.Header{
				{Key: "tenant", Value: []byte("a")},
				{Key: "Tenant", Value: []byte("case kept")},
				{Key: "tenant", Value: []byte("b")}, // repeated: the last wins
				{Key: "bin", Value: []byte{'x', 0xff, 'y'}},
				{Key: "empty", Value: nil},
			},
		},
		Key:       []byte{0xc3, 0x28}, // not UTF-8
		Timestamp: time.UnixMilli(1_700_000_000_000),
	}
	out, err := p.Apply(context.Background(), []byte(`{}`), in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"headers":{"Tenant":"case kept","bin":"x\ufffdy","empty":"","tenant":"b"},"key":"\ufffd(","next":1099511627778,"offset":1099511627777,"partition":7,"timestamp":"2023-11-14T22:13:20.000Z","topic":"tickets"}`
	if got := string(out); got != strings.ReplaceAll(want, `\ufffd`, "\uFFFD") {
		t.Fatalf("got  %s\nwant %s", out, want)
	}

	// A record without key, headers or timestamp.
	out, err = p.Apply(context.Background(), []byte(`{}`), transform.Input{})
	if err != nil {
		t.Fatal(err)
	}
	const wantBare = `{"headers":{},"key":"","next":1,"offset":0,"partition":0,"timestamp":null,"topic":""}`
	if string(out) != wantBare {
		t.Fatalf("got  %s\nwant %s", out, wantBare)
	}
}

// A program cannot read the environment, where the worker's secrets are.
func TestNoEnvironment(t *testing.T) {
	t.Setenv("CXBRIDGE_CLIENT_SECRET", "s3cret-value")
	p := mustCompile(t, `{a: $ENV, b: env}`)
	out, err := p.Apply(context.Background(), []byte(`{}`), transform.Input{})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"a":{},"b":{}}` {
		t.Fatalf("got %s", out)
	}
}

func reasonOf(t *testing.T, err error) (reason event.Reason, msg string) {
	t.Helper()
	var te *transform.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a *transform.Error", err, err)
	}
	if te.Error() != "transform: "+te.Msg {
		t.Fatalf("Error() = %q, Msg %q", te.Error(), te.Msg)
	}
	return te.Reason, te.Msg
}

func TestInvalidJSON(t *testing.T) {
	p := mustCompile(t, `{eventType: "x"}`)
	for _, tc := range []struct {
		name, value, msg string
	}{
		{"text", `order shipped`, "not valid JSON: invalid character 'o'"},
		{"empty", ``, "empty"},
		{"blank", " \n", "empty"},
		{"truncated", `{"a":1`, "not valid JSON: unexpected EOF"},
		{"two values", `{"a":1} {"a":2}`, "more after the value"},
		{"trailing garbage", `{"a":1}x`, "more after the value"},
		{"not UTF-8", "{\"a\":\"\xff\"}", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := p.Apply(context.Background(), []byte(tc.value), transform.Input{})
			if err == nil {
				t.Fatalf("Apply(%q) = %s, want an error", tc.value, out)
			}
			reason, msg := reasonOf(t, err)
			if reason != transform.ReasonInvalidJSON || !strings.Contains(msg, tc.msg) {
				t.Fatalf("Apply(%q): reason %q, message %q; want %q containing %q", tc.value, reason, msg, transform.ReasonInvalidJSON, tc.msg)
			}
		})
	}
	// Any JSON value is an input, not only objects; surrounding space is fine.
	for _, v := range []string{`"text"`, `12`, `null`, `[1,2]`, " {\"a\":1}\n"} {
		if _, err := mustCompile(t, `{v: .}`).Apply(context.Background(), []byte(v), transform.Input{}); err != nil {
			t.Errorf("Apply(%q): %v", v, err)
		}
	}
}

func TestTransformFailed(t *testing.T) {
	for _, tc := range []struct {
		program, value, msg string
	}{
		{`error("no status")`, `{}`, "no status"},
		{`.a.b`, `{"a":"text"}`, "expected an object but got: string"},
		{`{eventType: ("order." + .status)}`, `{"status":5}`, `cannot add: string ("order.") and number (5)`},
		{`empty`, `{}`, "program yielded no value, want one object"},
		{`select(.x)`, `{}`, "program yielded no value, want one object"},
		{`.a, .b`, `{}`, "program yielded 2 values, want one object"},
		{`.[]`, `[{},{},{}]`, "program yielded 3 values, want one object"},
		{`repeat({})`, `{}`, "program yielded more than 100 values, want one object"},
		{`"order"`, `{}`, "program yielded a string, want an object"},
		{`.`, `[1]`, "program yielded an array, want an object"},
		{`.n`, `{"n":1}`, "program yielded a number, want an object"},
		{`.missing`, `{}`, "program yielded null, want an object"},
		{`true`, `{}`, "program yielded a boolean, want an object"},
	} {
		t.Run(tc.program, func(t *testing.T) {
			p := mustCompile(t, tc.program)
			out, err := p.Apply(context.Background(), []byte(tc.value), sampleInput())
			if err == nil {
				t.Fatalf("Apply = %s, want an error", out)
			}
			reason, msg := reasonOf(t, err)
			if reason != transform.ReasonTransformFailed || !strings.Contains(msg, tc.msg) {
				t.Fatalf("reason %q, message %q; want %q containing %q", reason, msg, transform.ReasonTransformFailed, tc.msg)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		program      string
		line, column int
		want         string
	}{
		{`{eventType: }`, 1, 13, `invalid jq program at line 1, column 13: unexpected token "}"`},
		{`{eventType: .a,`, 1, 16, `invalid jq program at line 1, column 16: unexpected EOF`},
		{"{\n  eventType: .a,\n  source: \"shop\" |\n}", 4, 1, `invalid jq program at line 4, column 1: unexpected token "}"`},
		{`{"é": "x", b: é}`, 1, 15, `invalid jq program at line 1, column 15: unexpected token "é"`},
		{`{"é": "x", b: "unterminated}`, 1, 29, `invalid jq program at line 1, column 29: unterminated string literal`}, // gojq locates it at the end
		{`{a: input}`, 0, 0, `invalid jq program: input(s)/0 is not allowed`},
		{`{a: nosuchfunc}`, 0, 0, `invalid jq program: function not defined: nosuchfunc/0`},
		{`{a: $nosuchvar}`, 0, 0, `invalid jq program: variable not defined: $nosuchvar`},
		{`import "m" as m; .`, 0, 0, `invalid jq program: `},
		{`{a: 1} | debug`, 0, 0, `invalid jq program: function not defined: debug/0`},
		{`{a: 1} | stderr`, 0, 0, `invalid jq program: function not defined: stderr/0`},
	} {
		t.Run(tc.program, func(t *testing.T) {
			p, err := transform.Compile(tc.program)
			if err == nil {
				t.Fatalf("Compile = %v, want an error", p)
			}
			var ce *transform.CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *CompileError", err, err)
			}
			if ce.Line != tc.line || ce.Column != tc.column || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %q (line %d, column %d), want %q (line %d, column %d)", err, ce.Line, ce.Column, tc.want, tc.line, tc.column)
			}
		})
	}
}

// A program that never ends is stopped by the program's time limit, and the
// record fails with transform_failed; the default limit bounds it too.
func TestRunawayPrograms(t *testing.T) {
	const limit = 100 * time.Millisecond
	for _, program := range []string{
		`def f: f; f`,
		`def f: 1 + f; {a: f}`,
		`last(range(1e12)) | {a: .}`,
		`{n: [range(1e12)] | length}`,
		`{a: (range(1e12) | select(. < 0))}`,
		`until(false; .)`,
	} {
		t.Run(program, func(t *testing.T) {
			p := mustCompile(t, program, transform.WithTimeout(limit))
			start := time.Now()
			_, err := p.Apply(context.Background(), []byte(`{}`), transform.Input{})
			took := time.Since(start)
			reason, msg := reasonOf(t, err)
			if reason != transform.ReasonTransformFailed || msg != "program stopped after running 100ms" {
				t.Fatalf("reason %q, message %q", reason, msg)
			}
			if errors.Is(err, context.DeadlineExceeded) { // it would read as the caller's context ending
				t.Fatalf("%v wraps context.DeadlineExceeded", err)
			}
			if took < limit || took > limit+5*time.Second { // the upper bound is generous for a shared CPU
				t.Fatalf("Apply returned after %v, want about %v", took, limit)
			}
		})
	}
	t.Run("default limit", func(t *testing.T) {
		p := mustCompile(t, `def f: f; f`)
		start := time.Now()
		_, err := p.Apply(context.Background(), []byte(`{}`), transform.Input{})
		took := time.Since(start)
		reason, msg := reasonOf(t, err)
		if reason != transform.ReasonTransformFailed || msg != fmt.Sprintf("program stopped after running %v", transform.DefaultTimeout) {
			t.Fatalf("reason %q, message %q", reason, msg)
		}
		if took < transform.DefaultTimeout || took > transform.DefaultTimeout+5*time.Second {
			t.Fatalf("Apply returned after %v, want about %v", took, transform.DefaultTimeout)
		}
	})
}

// When the caller's context ends (the worker stops), Apply returns the
// context's error, not a *transform.Error: the record was not judged and
// must not be dead-lettered.
func TestCallerContextEnds(t *testing.T) {
	p := mustCompile(t, `def f: f; f`) // default limit: 1s
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := p.Apply(ctx, []byte(`{}`), transform.Input{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply = %v, want context.Canceled", err)
	}
	var te *transform.Error
	if errors.As(err, &te) {
		t.Fatalf("Apply = %v, a *transform.Error (%s)", err, te.Reason)
	}
	if took := time.Since(start); took >= transform.DefaultTimeout {
		t.Fatalf("Apply returned after %v, not when the context ended", took)
	}

	// The caller's deadline is the caller's, too.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = p.Apply(ctx, []byte(`{}`), transform.Input{})
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) {
		t.Fatalf("Apply = %v (%T), want the caller's context.DeadlineExceeded, not a *transform.Error", err, err)
	}
}

// One Program serves many goroutines at once (run with -race).
func TestConcurrentApply(t *testing.T) {
	p := mustCompile(t, readmeProgram+` | .data.seen = {partition: $partition, offset: $offset, key: $key}`)
	const goroutines, perGoroutine = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				value := fmt.Sprintf(`{"orderId":"o-%d-%d","status":"s%d"}`, g, i, i)
				in := transform.Input{Record: event.Record{Topic: "orders", Partition: g, Offset: int64(i)}, Key: fmt.Appendf(nil, "k%d", i), Timestamp: sampleTime}
				out, err := p.Apply(context.Background(), []byte(value), in)
				want := fmt.Sprintf(`{"correlationId":"o-%d-%d","data":{"orderId":"o-%d-%d","seen":{"key":"k%d","offset":%d,"partition":%d},"status":"s%d"},"eventType":"order.s%d","source":"shop","timestamp":"2024-01-02T02:04:05.678Z"}`, g, i, g, i, i, i, g, i, i)
				if err != nil || string(out) != want {
					errs <- fmt.Errorf("goroutine %d record %d: got %s, %v; want %s", g, i, out, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
