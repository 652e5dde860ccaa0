package bridge

import (
	"context"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/event"
)

// A record dead-lettered after redirects carries the redirect's Location
// in the DLQ's error header, for the operator to see where CXone sent it.
func TestProcessorRedirectLocationInDLQ(t *testing.T) {
	t.Parallel()
	const loc = "https://elsewhere.example/api/v2/events/publish"
	pub := &fakePublisher{t: t, publish: func(*event.Event) delivery.Outcome {
		return delivery.Outcome{Result: delivery.DeadLettered, Reason: event.ReasonRetriesExhausted, Status: 302, Attempts: 4,
			Err: &cxone.RedirectError{Status: 302, Location: loc}}
	}}
	w := &fakeDLQ{}
	if !NewProcessor(pub, w, nil, ProcessorHooks{}).Process(context.Background(), record(validValue)) {
		t.Fatal("not settled")
	}
	_, e := w.only(t)
	if e.Reason != event.ReasonRetriesExhausted || e.Status != 302 || !strings.Contains(e.Error, "Location "+loc) {
		t.Fatalf("entry reason %q status %d error %q: want retries_exhausted, 302 and the Location", e.Reason, e.Status, e.Error)
	}
}
