package itest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// A bad record that carries its own correlationId is found in the DLQ by
// that id (cxbridge.dlq.correlation.id), whatever rule it breaks.
func TestDeadLetterKeepsTheProducersCorrelationID(t *testing.T) {
	s := newStack(t, 3, sim.Config{})
	values := map[string]string{
		"invalid_event": `{"eventType":"","source":"s","timestamp":"2026-11-28T10:00:00Z","correlationId":"%s","traceId":"t-%[1]s"}`,
		"too_large":     `{"eventType":"a","source":"s","timestamp":"2026-11-28T10:00:00Z","correlationId":"%s","traceId":"t-%[1]s","data":{"blob":"` + strings.Repeat("x", 500_001) + `"}}`,
	}
	var msgs []kafka.Message
	for reason, v := range values {
		for i := range 3 {
			id := fmt.Sprintf("order-%s-%d", reason, i)
			msgs = append(msgs, kafka.Message{Key: []byte(id), Value: fmt.Appendf(nil, v, id)})
		}
	}
	s.write(msgs)
	w := s.startWorker(nil)
	s.waitCommitted(time.Minute)
	w.stop(t)
	recs := s.dlqRecords()
	if len(recs) != len(msgs) {
		t.Fatalf("%d DLQ records, want %d", len(recs), len(msgs))
	}
	for _, m := range recs {
		e, _, err := dlq.Parse(m.Headers)
		if err != nil {
			t.Fatal(err)
		}
		if want := string(m.Key); e.CorrelationID != want || e.TraceID != "t-"+want {
			t.Errorf("%s (%s): correlation id %q, trace id %q", m.Key, e.Reason, e.CorrelationID, e.TraceID)
		}
		if !strings.HasPrefix(string(m.Key), "order-"+string(e.Reason)) {
			t.Errorf("%s: reason %s", m.Key, e.Reason)
		}
	}
}
