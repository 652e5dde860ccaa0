package itest

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/admin"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// The status page's charts come from what the worker did: a worker at the
// defaults works through a backlog that CXone throttles to 20 accepted/s;
// /history.json on its admin handler then shows the backlog (lag and
// records in flight above zero) draining to nothing, and its rates, summed
// over their intervals, come to exactly the records accepted and
// dead-lettered.
func TestStatusHistory(t *testing.T) {
	s := newStack(t, 3, sim.Config{Faults: sim.Faults{RateLimit: 20, RetryAfter: "1"}})
	good := goodRecords(200, 20, 12)
	bad, _ := badRecords(2)
	msgs := mix(good, bad, 12)
	s.write(msgs) // a backlog before the worker joins
	r := s.startWorker(nil)
	srv := httptest.NewServer(r.w.Admin())
	defer srv.Close()
	var h admin.HistoryData
	read := func() admin.HistoryData {
		resp, err := http.Get(srv.URL + "/history.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d admin.HistoryData
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != 200 {
			t.Fatalf("history.json: %d %v", resp.StatusCode, err)
		}
		return d
	}
	state := func() string { return fmt.Sprintf("history %+v; simulator %+v", h, s.sim.Stats()) }

	s.waitAccepted(int64(len(good)), 2*time.Minute)
	s.waitCommitted(time.Minute)
	// The lag gauge is read every 5 s and the history sampled every 5 s:
	// await a point that has seen it all settled.
	testutil.WaitFor(t, 30*time.Second, "a point with no lag and nothing in flight", func() bool {
		h = read()
		n := len(h.TimeMS)
		return n > 0 && h.Lag[n-1] == 0 && h.InFlight[n-1] == 0
	}, state)

	var accepted, dead, maxLag, maxInFlight float64
	from := h.StartMS
	for i, to := range h.TimeMS {
		secs := float64(to-from) / 1000
		if secs <= 0 || secs > 2*admin.HistoryEvery.Seconds() {
			t.Errorf("point %d: an interval of %.3fs, want about %v", i, secs, admin.HistoryEvery)
		}
		accepted += h.AcceptedPerSecond[i] * secs
		dead += h.DeadLettersPerSecond[i] * secs
		maxLag, maxInFlight = max(maxLag, h.Lag[i]), max(maxInFlight, h.InFlight[i])
		from = to
	}
	if got := math.Round(accepted); got != float64(len(good)) {
		t.Errorf("accepted/s over the intervals sums to %.3f, want %d; %s", accepted, len(good), state())
	}
	if got := math.Round(dead); got != float64(len(bad)) {
		t.Errorf("dead letters/s over the intervals sums to %.3f, want %d; %s", dead, len(bad), state())
	}
	if maxLag == 0 || maxInFlight == 0 {
		t.Errorf("the backlog of %d records never showed: lag at most %v, in flight at most %v; %s", len(msgs), maxLag, maxInFlight, state())
	}
	if maxLag > float64(len(msgs)) || maxInFlight > float64(len(msgs)) {
		t.Errorf("more than the %d records written: lag at most %v, in flight at most %v", len(msgs), maxLag, maxInFlight)
	}
	r.stop(t)
}
