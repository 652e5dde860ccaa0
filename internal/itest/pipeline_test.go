package itest

import (
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// Every good record is accepted, every bad one is in the DLQ exactly once
// with its reason and original coordinates, and the group commits every end
// offset (invariants 1 and 7).
func TestPipelineSettlesEverything(t *testing.T) {
	s := newStack(t, 6, sim.Config{})
	good := goodRecords(10_000, 100, 1)
	bad, want := badRecords(100)
	all := append(good, bad...)
	shuffle(all, 2)
	t0 := time.Now()
	s.write(all)
	t.Logf("wrote %d records in %v", len(all), time.Since(t0))
	t0 = time.Now()
	w := s.startWorker(nil)
	s.waitCommitted(2 * time.Minute)
	t.Logf("settled and committed in %v", time.Since(t0))
	t0 = time.Now()

	st := s.sim.Stats()
	if st.Distinct != int64(len(good)) {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, len(good))
	}
	t.Logf("accepted %d (distinct %d, duplicates %d)", st.Accepted, st.Distinct, st.Duplicates)
	recs := s.dlqRecords()
	input := s.inputRecords()
	seen := map[string]int{}
	for _, m := range recs {
		e, ok, err := dlq.Parse(m.Headers)
		if err != nil || !ok {
			t.Fatalf("DLQ record without valid headers: %v", err)
		}
		key := string(m.Key)
		seen[key]++
		if string(e.Reason) != want[key] {
			t.Errorf("%s: reason %q, want %q", key, e.Reason, want[key])
		}
		if e.Topic != s.input || e.CorrelationID == "" || e.TraceID == "" {
			t.Errorf("%s: entry %+v", key, e)
		}
		// The original coordinates point at the original record.
		orig := input[[2]int64{int64(e.Partition), e.Offset}]
		if string(orig.Key) != key || (string(orig.Value) != string(m.Value) && m.Value != nil) {
			t.Errorf("%s: original %s/%d/%d holds another record", key, e.Topic, e.Partition, e.Offset)
		}
	}
	for key := range want {
		if seen[key] != 1 {
			t.Errorf("%s is in the DLQ %d times, want once", key, seen[key])
		}
	}
	if len(recs) != len(want) {
		t.Errorf("%d DLQ records, want %d", len(recs), len(want))
	}
	o := s.offsets()
	for p, end := range o.End {
		if o.Committed[p] != end {
			t.Errorf("partition %d committed %d, end %d", p, o.Committed[p], end)
		}
	}
	t.Logf("checked in %v", time.Since(t0))
	t0 = time.Now()
	w.stop(t)
	t.Logf("stopped in %v", time.Since(t0))
}
