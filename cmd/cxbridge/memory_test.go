package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// The settings of the memory test's workers, and the broker's limit on the
// hostile topic (so that records larger than a fetch can be written at all).
const (
	memPartitions  = 3
	memFetchMax    = 2 << 20        // --kafka-fetch-max-bytes (the default)
	memMaxInFlight = 16             // --max-in-flight
	memTopicMax    = 3<<20 + 64<<10 // max.message.bytes of the hostile topic
	memCaseHeader  = "mem-case"
)

// memCase is one kind of hostile record.
type memCase struct {
	name    string
	n       int    // records of this kind
	want    string // "accepted" or the DLQ reason
	value   func(id string) []byte
	headers func(id string) []kafka.Header
}

const memHead = `{"eventType":"mem.test","source":"memory-test","timestamp":"2026-01-02T03:04:05Z"`

// memEvent is a valid event whose data names its case, with extra members.
func memEvent(id, extraTop, extraData string) []byte {
	return []byte(memHead + `,"correlationId":"` + id + `"` + extraTop + `,"data":{"case":"` + id + `"` + extraData + `}}`)
}

// padTo is prefix + fill… + suffix, n bytes in all.
func padTo(prefix string, n int, fill byte, suffix string) []byte {
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	b = append(b, bytes.Repeat([]byte{fill}, n-len(prefix)-len(suffix))...)
	return append(b, suffix...)
}

// manyKeys is `,"k0":0,"k1":1,…` with n members.
func manyKeys(n int) string {
	b := make([]byte, 0, n*10)
	for i := range n {
		b = append(b, `,"k`...)
		b = strconv.AppendInt(b, int64(i), 16)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, int64(i%10), 10)
	}
	return string(b)
}

func memCases() []memCase {
	keys := manyKeys(100_000)
	return []memCase{
		{name: "ordinary", n: 20, want: "accepted", value: func(id string) []byte { return memEvent(id, "", `,"n":1`) }},
		// Size: the largest valid data, records around and over the fetch size.
		{name: "max-valid-data", n: 4, want: "accepted", value: func(id string) []byte {
			return memEvent(id, "", `,"s":"`+strings.Repeat("v", event.MaxDataBytes-200)+`"`)
		}},
		{name: "just-under-fetch", n: 6, want: "too_large", value: func(id string) []byte {
			return padTo(memHead+`,"data":{"case":"`+id+`","s":"`, memFetchMax-8<<10, 'u', `"}}`)
		}},
		{name: "over-fetch", n: 3, want: "too_large", value: func(id string) []byte {
			return padTo(memHead+`,"data":{"case":"`+id+`","s":"`, memFetchMax+1<<20, 'o', `"}}`)
		}},
		// Headers: thousands of them, and very large values.
		{name: "10k-headers", n: 3, want: "accepted", value: func(id string) []byte { return memEvent(id, "", "") },
			headers: func(string) []kafka.Header {
				hs := make([]kafka.Header, 10_000)
				for i := range hs {
					hs[i] = kafka.Header{Key: "h" + strconv.Itoa(i), Value: bytes.Repeat([]byte("x"), 40)}
				}
				return hs
			}},
		{name: "huge-id-headers", n: 3, want: "accepted",
			// No ids in the event: the (unusable) headers are read, then ids derived.
			value: func(id string) []byte { return []byte(memHead + `,"data":{"case":"` + id + `"}}`) },
			headers: func(string) []kafka.Header {
				return []kafka.Header{
					{Key: event.HeaderCorrelationID, Value: bytes.Repeat([]byte("c"), 700<<10)},
					{Key: event.HeaderTraceparent, Value: bytes.Repeat([]byte("0"), 300<<10)},
				}
			}},
		{name: "huge-header-invalid", n: 3, want: "invalid_json",
			value: func(id string) []byte { return []byte(`{"not json` + id) },
			headers: func(string) []kafka.Header {
				return []kafka.Header{{Key: "blob", Value: bytes.Repeat([]byte("b"), 600<<10)}}
			}},
		// Hostile JSON.
		{name: "nested-100k", n: 3, want: "invalid_json", value: func(id string) []byte {
			return []byte(memHead + `,"data":{"case":"` + id + `","d":` + strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_002))
		}},
		{name: "arrays-500k", n: 2, want: "invalid_json", value: func(string) []byte {
			return []byte(strings.Repeat("[", 500_000) + strings.Repeat("]", 500_000))
		}},
		{name: "huge-event-type", n: 3, want: "invalid_event", value: func(id string) []byte {
			return []byte(`{"eventType":"` + strings.Repeat("t", 900_000) + `","source":"s","timestamp":"2026-01-02T03:04:05Z","correlationId":"` + id + `"}`)
		}},
		{name: "huge-data-string", n: 3, want: "too_large", value: func(id string) []byte {
			return memEvent(id, "", `,"s":"`+strings.Repeat("s", 900_000)+`"`)
		}},
		{name: "100k-top-level-keys", n: 4, want: "accepted", value: func(id string) []byte { return memEvent(id, keys, "") }},
		{name: "100k-data-keys", n: 3, want: "too_large", value: func(id string) []byte { return memEvent(id, "", keys) }},
		{name: "number-run", n: 3, want: "too_large", value: func(id string) []byte {
			return memEvent(id, "", `,"n":[`+strings.Repeat("1234567,", 120_000)+"0]")
		}},
		{name: "top-level-numbers", n: 2, want: "invalid_event", value: func(string) []byte {
			return []byte("[" + strings.Repeat("1,", 500_000) + "1]")
		}},
		{name: "million-digit-number", n: 2, want: "invalid_event", value: func(id string) []byte {
			return []byte(`{"eventType":` + strings.Repeat("9", 1_000_000) + `,"source":"s","timestamp":"2026-01-02T03:04:05Z","correlationId":"` + id + `"}`)
		}},
		{name: "invalid-utf8", n: 2, want: "invalid_json", value: func(string) []byte { return bytes.Repeat([]byte{0xff}, 1_000_000) }},
		{name: "empty", n: 2, want: "invalid_json", value: func(string) []byte { return nil }},
	}
}

// procStatus reads a "Name:   123 kB" line of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, name string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}

// vmHWM is the peak resident set size of process pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 { return procStatus(t, pid, "VmHWM") }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// startMemWorker starts a worker with the memory test's settings on topic.
func startMemWorker(t *testing.T, e *env, topic, group string) *worker {
	t.Helper()
	return e.startWorker(t, "--kafka-input-topic", topic, "--kafka-group-id", group, "--admin-addr", freeAddr(t),
		"--kafka-fetch-max-bytes", strconv.Itoa(memFetchMax), "--max-in-flight", strconv.Itoa(memMaxInFlight),
		"--log-level", "warn")
}

// finishMemRun waits until the worker's group has committed all of topic,
// reads its peak RSS, stops it with SIGTERM and checks it exited 0 without
// a panic.
func finishMemRun(t *testing.T, e *env, w *worker, topic, group string) int64 {
	t.Helper()
	testutil.WaitFor(t, 45*time.Second, "every record of "+topic+" settled and committed", func() bool {
		select {
		case <-w.done:
			t.Fatalf("the worker exited (code %d)", w.cmd.ProcessState.ExitCode())
		default:
		}
		return groupLag(t, e.broker, group, topic) == 0
	})
	hwm := vmHWM(t, w.cmd.Process.Pid)
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if log := w.stderr.String(); strings.Contains(log, "panic") || strings.Contains(log, "fatal error") {
		t.Fatalf("the worker panicked:\n%s", testutil.Tail(log, 4000))
	}
	return hwm
}

// The records a worker holds, and so the bound on its memory. Read from
// internal/consumer (a fetch loop per partition over a reader that holds
// one fetch response at a time and copies one record at a time out of it)
// and internal/dispatch (at most --max-in-flight records and
// --max-in-flight-bytes of them held, or one record larger than that):
//
//   - outside the dispatcher, per partition: the fetch response the reader
//     holds (at most R, see below), the record it copied out of it and
//     hands over, and the one the fetch loop holds while Submit waits for
//     room: 3 records' worth, written (Q+2) below with Q = 1;
//   - in the dispatcher: at most M = --max-in-flight records and at most
//     B = --max-in-flight-bytes of them (plus one record, as a record is
//     admitted alone when it is larger than what is left), so at most
//     H = min(M × R, B + R) bytes, each with what processing it costs —
//     the value, the decoded event (compacted data ≤ the value; no copy of
//     unknown members), the publish body or the DLQ record being encoded:
//     at most about 4 H;
//
// where R is the largest record the worker can be handed: a fetch returns
// at least one whole record batch even when it is larger than
// --kafka-fetch-max-bytes (KIP-74), so R = max(--kafka-fetch-max-bytes,
// the topic's max.message.bytes). Go's collector lets the heap grow to
// twice what is live (GOGC=100) before it collects. So, over the same
// worker's footprint on ordinary records:
//
//	peak RSS ≤ control peak + 2 × (P × (Q+2) × R + 4 × H)
//
// and while CXone is slow, with the dispatcher full of small records, only
// the Q+2 records per partition can be large:
//
//	stalled peak RSS ≤ control peak + 2 × P × (Q+2) × R
//
// (With kafka-go's Reader and its queue at 64, every partition pulled 66
// records of up to R into memory whatever --max-in-flight said; the stalled
// check failed then.)
const (
	memQueueCapacity = 1                              // the one fetch response a partition's reader holds
	memInFlightBytes = config.DefaultMaxInFlightBytes // --max-in-flight-bytes, not set by these tests
)

// Oversized records, huge headers and hostile JSON take the worker's
// memory no further than its settings allow, and each one is settled with
// the right outcome: accepted when it is actually valid, else dead-lettered
// with its reason; the process never crashes. See above for the bounds.
func TestHostileInputMemoryBound(t *testing.T) {
	processTest(t)
	testStart := time.Now()
	b := testkafka.Start(t, testkafka.Config{Partitions: memPartitions, Topics: []string{"mem.control", "cxone.events.dlq"}})
	controlTopic, controlGroup := b.Topic("mem.control"), b.Group("mem-control")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, url, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{broker: b, sim: s, simURL: url, dlq: b.Topic("cxone.events.dlq")}
	hostileTopic, hostileGroup := b.CreateTopic("mem.hostile", memPartitions, map[string]string{"max.message.bytes": strconv.Itoa(memTopicMax)}), b.Group("mem-hostile")

	// Control: ordinary records.
	const controlN = 2000
	var st produce.Stats
	if err := produce.Run(ctx, produce.Config{Brokers: b.Addrs, Topic: controlTopic, Count: controlN, Keys: 200, Size: 400, Seed: 3}, &st, nil); err != nil {
		t.Fatal(err)
	}
	w := startMemWorker(t, e, controlTopic, controlGroup)
	control := finishMemRun(t, e, w, controlTopic, controlGroup)
	if got := s.Stats().Distinct; got != controlN {
		t.Fatalf("control: %d accepted, want %d", got, controlN)
	}
	s.Reset()

	// Hostile records. First small valid ones that CXone will answer
	// slowly, enough to fill the dispatcher; then records larger than a
	// fetch, which pile up behind them; then every other kind, shuffled.
	want := map[string]string{}
	var largest int
	msg := func(id string, value []byte, hs []kafka.Header, outcome string) kafka.Message {
		m := kafka.Message{Value: value, Headers: append([]kafka.Header{{Key: memCaseHeader, Value: []byte(id)}}, hs...)}
		size := len(m.Value)
		for _, h := range m.Headers {
			size += len(h.Key) + len(h.Value)
		}
		largest = max(largest, size)
		want[id] = outcome
		return m
	}
	var first, rest []kafka.Message
	for i := range memMaxInFlight + memPartitions {
		id := fmt.Sprintf("slow#%d", i)
		first = append(first, msg(id, memEvent(id, "", ""), nil, "accepted"))
	}
	for i := range 8 * memPartitions {
		id := fmt.Sprintf("over-fetch-queued#%d", i)
		first = append(first, msg(id, padTo(memHead+`,"data":{"case":"`+id+`","s":"`, memFetchMax+1<<20, 'q', `"}}`), nil, "too_large"))
	}
	for _, c := range memCases() {
		for i := range c.n {
			id := fmt.Sprintf("%s#%d", c.name, i)
			var hs []kafka.Header
			if c.headers != nil {
				hs = c.headers(id)
			}
			rest = append(rest, msg(id, c.value(id), hs, c.want))
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	wr := b.Writer(hostileTopic)
	wr.Balancer, wr.BatchSize, wr.BatchBytes = &kafka.RoundRobin{}, 1, memTopicMax
	var total int64
	all := append(first, rest...)
	for _, m := range all {
		total += int64(len(m.Value))
	}
	// One call: kafka-go keeps each partition's order; BatchSize 1 makes
	// every record its own record batch.
	if err := wr.WriteMessages(ctx, all...); err != nil {
		t.Fatalf("writing the hostile records: %v", err)
	}
	_ = wr.Close()
	t.Logf("wrote %d hostile records, %s, the largest %s (set-up %v)", len(want), mib(total), mib(int64(largest)), time.Since(testStart).Round(time.Millisecond))

	// CXone slow: the dispatcher fills with small records, fetching waits.
	const latency = 4 * time.Second
	s.SetFaults(sim.Faults{Latency: sim.Duration(latency)})
	w = startMemWorker(t, e, hostileTopic, hostileGroup)
	testutil.WaitFor(t, 30*time.Second, "the dispatcher full of slow publishes", func() bool { return s.Stats().Requests >= memMaxInFlight })
	stallStart := time.Now()
	// Let the fetch loops fill their queues: until the RSS is steady for a
	// second, within the stall.
	last, steadySince := int64(0), time.Now()
	for time.Since(stallStart) < latency-time.Second && time.Since(steadySince) < time.Second {
		if rss := procStatus(t, w.cmd.Process.Pid, "VmRSS"); rss > last+(256<<10) {
			last, steadySince = rss, time.Now()
		}
		time.Sleep(50 * time.Millisecond) // a measuring window: the RSS sampled every 50 ms, bounded by the stall
	}
	stalled := vmHWM(t, w.cmd.Process.Pid)
	if got := s.Stats().Accepted; got != 0 {
		t.Fatalf("%d publishes finished during the stall: the stall measured nothing", got)
	}
	s.SetFaults(sim.Faults{})
	hostile := finishMemRun(t, e, w, hostileTopic, hostileGroup)

	// Every record settled as it should be.
	got := map[string]string{}
	for corr := range s.AcceptedCounts() {
		a, _ := s.Lookup(corr)
		var data struct{ Case string }
		_ = json.Unmarshal(a.Data, &data)
		got[data.Case] = "accepted"
	}
	err = dlq.Scan(ctx, dlq.ReaderConfig{Brokers: b.Addrs, Topic: e.dlq}, func(m kafka.Message) error {
		entry, ok, err := dlq.Parse(m.Headers)
		if !ok || err != nil {
			return fmt.Errorf("DLQ record without its headers: %v", err)
		}
		for _, h := range m.Headers {
			if h.Key == memCaseHeader {
				if prev, dup := got[string(h.Value)]; dup {
					return fmt.Errorf("%s settled twice: %s and %s", h.Value, prev, entry.Reason)
				}
				got[string(h.Value)] = string(entry.Reason)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %q, want %q", id, got[id], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d outcomes for %d records", len(got), len(want))
	}

	// The bounds.
	r := int64(max(memFetchMax, memTopicMax))
	const q = memQueueCapacity
	held := min(memMaxInFlight*r, memInFlightBytes+r)
	bound := control + 2*(memPartitions*(q+2)*r+4*held)
	stallBound := control + 2*memPartitions*(q+2)*r
	t.Logf("control peak RSS %s (%d ordinary records)", mib(control), controlN)
	t.Logf("stalled peak RSS %s (+%s), bound %s = control + 2 × P %d × (Q %d + 2) × R %s",
		mib(stalled), mib(stalled-control), mib(stallBound), memPartitions, q, mib(r))
	t.Logf("hostile peak RSS %s (+%s), bound %s = control + 2 × (P %d × (Q %d + 2) × R %s + 4 × H %s), H = min(M %d × R, B %s + R)",
		mib(hostile), mib(hostile-control), mib(bound), memPartitions, q, mib(r), mib(held), memMaxInFlight, mib(memInFlightBytes))
	if stalled > stallBound {
		t.Errorf("stalled peak RSS %s over its bound %s: records are held beyond --max-in-flight", mib(stalled), mib(stallBound))
	}
	if hostile > bound {
		t.Errorf("hostile peak RSS %s over the bound %s", mib(hostile), mib(bound))
	}
	t.Logf("took %v", time.Since(testStart).Round(time.Millisecond))
}

// The memory bound at the shipped defaults, on valid events as large as the
// contract allows: 300 events of ~490 KB (data just under
// event.MaxDataBytes), 300 keys, over 6 partitions, while CXone answers
// each publish in 1 s so that the worker holds as many as it may. Only the
// input topic, the group and the admin address are set (and, by
// startWorker, the test's fast group timings, which hold nothing); every
// setting that bounds memory — --max-in-flight, --max-in-flight-bytes,
// --kafka-fetch-max-bytes — is at its default. The peak RSS must stay
// within 256 MiB, half of deploy/k8s's memory limit.
func TestLargeEventsMemoryAtDefaults(t *testing.T) {
	processTest(t)
	const (
		n         = 300
		dataBytes = 489_000
		bound     = 256 << 20
	)
	b := testkafka.Start(t, testkafka.Config{Partitions: 6, Topics: []string{"mem.large", "cxone.events.dlq"}})
	topic, group := b.Topic("mem.large"), b.Group("mem-large")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, url, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{Faults: sim.Faults{Latency: sim.Duration(time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{broker: b, sim: s, simURL: url, dlq: b.Topic("cxone.events.dlq")}

	fill := strings.Repeat("x", dataBytes)
	msgs := make([]kafka.Message, n)
	var total int64
	for i := range msgs {
		id := fmt.Sprintf("large-%03d", i)
		msgs[i] = kafka.Message{Key: []byte(id), Value: memEvent(id, "", `,"s":"`+fill+`"`)}
		total += int64(len(msgs[i].Value))
	}
	wr := b.Writer(topic)
	wr.BatchSize, wr.BatchBytes = 1, 1<<20
	if err := wr.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("writing the records: %v", err)
	}
	_ = wr.Close()
	msgs, fill = nil, ""
	t.Logf("wrote %d valid events, %s", n, mib(total))

	w := e.startWorker(t, "--kafka-input-topic", topic, "--kafka-group-id", group, "--admin-addr", freeAddr(t), "--log-level", "warn")
	peak := finishMemRun(t, e, w, topic, group)
	if st := s.Stats(); st.Distinct != n {
		t.Fatalf("%d events accepted, want %d (%+v)", st.Distinct, n, st)
	}
	t.Logf("peak RSS %s (bound %s) for %d events of %s in flight at the defaults", mib(peak), mib(bound), n, mib(total/n))
	if peak > bound {
		t.Errorf("peak RSS %s over %s", mib(peak), mib(bound))
	}
}
