package itest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// keysIn returns n keys prefix-0, prefix-1, … that the hash balancer puts
// in partition p of partitions (in = true) or in any other (in = false).
func keysIn(prefix string, n, p, partitions int, in bool) []string {
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	var out []string
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if ((&kafka.Hash{}).Balance(kafka.Message{Key: []byte(k)}, ids...) == p) == in {
			out = append(out, k)
		}
	}
	return out
}

func event(key string, n int) kafka.Message {
	return kafka.Message{Key: []byte(key), Value: fmt.Appendf(nil,
		`{"eventType":"custom.itest","source":"itest","timestamp":"2026-01-02T03:04:05.000Z","data":{"key":%q,"n":%d}}`, key, n)}
}

// holdSampler records the most the worker held while it ran: records in
// flight, the longest lane of partition p and the records p's tracker held.
type holdSampler struct {
	mu                      sync.Mutex
	inFlight, lane, tracked int
	stop, done              chan struct{}
}

func sampleHolds(r *running, topic string, p int) *holdSampler {
	h := &holdSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			_, lane := r.w.Dispatcher().PartitionInFlight(topic, p)
			tracked := 0
			for _, ps := range r.w.Consumer().Status().Partitions {
				if ps.Partition == p {
					tracked = ps.Tracked
				}
			}
			h.mu.Lock()
			h.inFlight, h.lane, h.tracked = max(h.inFlight, r.w.InFlight()), max(h.lane, lane), max(h.tracked, tracked)
			h.mu.Unlock()
			select {
			case <-h.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *holdSampler) halt() (inFlight, lane, tracked int) {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inFlight, h.lane, h.tracked
}

// The DLQ topic refuses one record for good (INVALID_RECORD, as a compacted
// topic answers a record without a key) while 10,000 records follow it in
// its partition, at the shipped defaults. Either its key's records pile up
// behind it, or other keys' records do. Bounded: its key holds at most a
// quarter of --max-in-flight, its partition at most
// --max-uncommitted-per-partition records from it on, and the other
// partitions keep flowing — their records accepted and committed — while
// its partition is not committed past it; /readyz and the metrics say the
// DLQ refuses it. Once the topic accepts it again, everything settles and
// nothing is lost.
func TestDLQRefusesOneRecordForGood(t *testing.T) {
	for _, tc := range []struct {
		name string
		hot  int // of the 10,000 records behind it, how many have its key (spread evenly)
	}{
		{"its key behind it", 1000},
		{"other keys behind it", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const (
				partitions = 6
				behind     = 10_000
				elsewhere  = 3_000
			)
			s := newStack(t, partitions, sim.Config{})
			s.broker.RequireEmbedded("the broker refuses one record, found by its content, for as long as the test says")
			defaults := s.settings().Worker
			share, maxUncommitted := config.LaneShare(defaults.MaxInFlight), defaults.MaxUncommittedPerPartition
			p := (&kafka.Hash{}).Balance(kafka.Message{Key: []byte("hot")}, 0, 1, 2, 3, 4, 5)
			marker := []byte("poison-marker")
			fault := s.broker.Embedded().Cluster().Fault(testkafka.RefuseProduce(s.dlqName, marker, kerr.InvalidRecord))

			msgs := []kafka.Message{{Key: []byte("hot"), Value: append([]byte("{not json "), marker...)}}
			others := keysIn("p", behind, p, partitions, true)
			for i := range behind {
				key := others[i]
				if tc.hot > 0 && i%(behind/tc.hot) == 0 {
					key = "hot"
				}
				msgs = append(msgs, event(key, i))
			}
			s.write(msgs)
			var rest []kafka.Message
			for i, k := range keysIn("q", elsewhere, p, partitions, false) {
				rest = append(rest, event(k, i))
			}

			r := s.startWorker(nil)
			holds := sampleHolds(r, s.input, p)
			defer holds.halt()
			// Its partition stops: what it holds stays the same for a second.
			last, since := -1, time.Now()
			testutil.WaitFor(t, time.Minute, "the partition of the refused record to stop", func() bool {
				tracked := 0
				for _, ps := range r.w.Consumer().Status().Partitions {
					if ps.Partition == p {
						tracked = ps.Tracked
					}
				}
				if tracked != last {
					last, since = tracked, time.Now()
				}
				refused, _ := r.metric("cxbridge_dlq_refused_records", "")
				return refused == 1 && tracked > 0 && time.Since(since) > time.Second
			}, func() string { return fmt.Sprintf("partition %d holds %d", p, last) })
			stoppedAt := s.sim.Stats().Distinct

			// The other partitions flow.
			s.write(rest)
			var o map[int]int64
			testutil.WaitFor(t, time.Minute, "the other partitions' records accepted and committed", func() bool {
				if s.sim.Stats().Distinct < stoppedAt+elsewhere {
					return false
				}
				off := s.offsets()
				o = off.Committed
				for q, end := range off.End {
					if q != p && off.Committed[q] != end {
						return false
					}
				}
				return true
			}, func() string {
				return fmt.Sprintf("committed %v, simulator %+v, in flight %d", o, s.sim.Stats(), r.w.InFlight())
			})
			if c := s.offsets().Committed[p]; c != 0 {
				t.Errorf("partition %d committed %d, past the refused record at 0", p, c)
			}
			inFlight, lane, tracked := holds.halt()
			t.Logf("while refused: at most %d in flight, %d in the key's lane, %d held by partition %d; %d accepted before the other partitions were written",
				inFlight, lane, tracked, p, stoppedAt)
			if inFlight > defaults.MaxInFlight || lane > share || tracked > maxUncommitted {
				t.Errorf("held at most %d in flight (max %d), %d in one key's lane (share %d), %d in the partition (max %d)",
					inFlight, defaults.MaxInFlight, lane, share, tracked, maxUncommitted)
			}
			if _, by := r.metric("cxbridge_dlq_write_failures_total", "kind"); by["permanent"] == 0 {
				t.Errorf("dlq write failures by kind %v, want permanent ones", by)
			}
			rec := httptest.NewRecorder()
			r.w.Admin().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "refuses 1 record(s) for good") {
				t.Errorf("/readyz: %d %s", rec.Code, rec.Body)
			}

			// The topic accepts it again: everything settles.
			fault.Remove()
			s.waitCommitted(2 * time.Minute)
			r.stop(t)
			if st := s.sim.Stats(); st.Distinct != behind+elsewhere {
				t.Errorf("%d distinct events accepted, want %d", st.Distinct, behind+elsewhere)
			}
			if n := s.dlqByKey(map[string]string{"hot": "invalid_json"})["hot"]; n != 1 {
				t.Errorf("the refused record is in the DLQ %d times, want once", n)
			}
			if refused, _ := r.metric("cxbridge_dlq_refused_records", ""); refused != 0 {
				t.Errorf("cxbridge_dlq_refused_records %v after the topic accepted it", refused)
			}
		})
	}
}
