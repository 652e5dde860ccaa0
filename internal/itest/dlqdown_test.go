package itest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// The DLQ topic refuses writes for a while, then is restored, with bad
// records in the stream: a failed DLQ write never lets the watermark pass
// (invariant 1) — while it fails, each partition's committed offset stops
// exactly at its first bad record although the good records after it are
// accepted (invariant 7: the line goes on) — and once the DLQ is back every
// bad record is in it, nothing is lost, and everything is committed.
func TestDLQUnavailableHoldsTheWatermark(t *testing.T) {
	const keys, per = 100, 30
	s := newStack(t, 6, sim.Config{})
	good := keyedRecords(keys, per, 19)
	bad, want := badRecords(1)
	s.write(mix(good, bad, 20))

	// Where the bad records are: partition → offset → key.
	badAt := map[int]map[int64]string{}
	firstBad := map[int]int64{}
	for pk, m := range s.inputRecords() {
		if _, ok := want[string(m.Key)]; !ok {
			continue
		}
		p, off := int(pk[0]), pk[1]
		if badAt[p] == nil {
			badAt[p] = map[int64]string{}
		}
		badAt[p][off] = string(m.Key)
		if f, ok := firstBad[p]; !ok || off < f {
			firstBad[p] = off
		}
	}
	t.Logf("first bad record by partition: %v", firstBad)

	restore, refused := s.refuseDLQ()
	var restored atomic.Bool
	// Every sample: no committed offset passes a bad record that is not in
	// the DLQ. The DLQ is read after the offsets, so it holds at least what
	// it held when they were committed.
	watch := s.watchOffsets(50*time.Millisecond, func(o consumer.GroupLag) []string {
		inDLQ := map[string]bool{}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: s.broker.Addrs, Topic: s.dlqName}, func(m kafka.Message) error {
			inDLQ[string(m.Key)] = true
			return nil
		})
		if err != nil {
			return nil // no DLQ view this time
		}
		if len(inDLQ) > 0 && !restored.Load() {
			return []string{fmt.Sprintf("DLQ holds %d records while its writes fail", len(inDLQ))}
		}
		var out []string
		for p, offs := range badAt {
			for off, key := range offs {
				if !inDLQ[key] && o.Committed[p] > off {
					out = append(out, fmt.Sprintf("partition %d committed %d past bad record %s at %d, not in the DLQ", p, o.Committed[p], key, off))
				}
			}
		}
		return out
	})

	w := s.startWorker(nil)
	// The line goes on: every good record is accepted while the bad ones
	// cannot be dead-lettered, and each partition commits up to its first
	// bad record, no further.
	s.waitAccepted(int64(len(good)), time.Minute)
	var o consumer.GroupLag
	testutil.WaitFor(t, 10*time.Second, "every partition committed up to its first bad record", func() bool {
		o = s.offsets()
		for p, end := range o.End {
			if f, ok := firstBad[p]; ok && o.Committed[p] != f || !ok && o.Committed[p] != end {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("committed %v, first bad %v", o.Committed, firstBad) })
	// The watermark holds: let the watch sample it a few more times.
	n := watch.sampled()
	testutil.WaitFor(t, 10*time.Second, "10 more samples of the held offsets", func() bool { return watch.sampled() >= n+10 })
	failures, _ := w.metric("cxbridge_dlq_write_failures_total", "")
	t.Logf("DLQ down: %d produce requests refused (-1: not counted on a real broker), %v write failures, committed %v, lag %d", refused(), failures, o.Committed, o.TotalLag())
	if refused() == 0 || failures == 0 {
		t.Errorf("the DLQ writes did not fail (%d refused, %v failures)", refused(), failures)
	}

	restored.Store(true)
	restore()
	t0 := time.Now()
	s.waitCommitted(time.Minute)
	t.Logf("DLQ restored: everything committed %v later", time.Since(t0))
	w.stop(t)
	watch.halt()

	st := s.sim.Stats()
	if st.Distinct != int64(len(good)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(good))
	}
	seen := s.dlqByKey(want)
	var missing []string
	for key := range want {
		if seen[key] == 0 {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		t.Errorf("not in the DLQ: %s", strings.Join(missing, ", "))
	}
	t.Logf("%d bad records in the DLQ, %d offset samples", len(seen), watch.samples)
	for _, v := range watch.bad {
		t.Error(v)
	}
	for _, v := range watch.regress {
		t.Error("committed offset moved backwards: " + v)
	}
}
