package itest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// healthz asks the worker's /healthz: its status code and answer.
func healthz(t *testing.T, r *running) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	r.w.Admin().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("/healthz answered %q: %v", rec.Body.String(), err)
	}
	return rec.Code, body
}

// A member whose fetch loop is wedged on a partition that has records to
// fetch fails /healthz (so that Kubernetes restarts it), naming the
// partition; a CXone outage at the same time, with the other partitions'
// records in flight, adds nothing to the verdict; once the loop moves
// again /healthz is ok. The wedge is a test hook blocking the partition's
// fetch loop (a real wedge is a defect of the worker: a broker that stops
// answering fails the fetch within its time limit, which is a step).
// Shipped fetch settings: the bound is 2 × (500 ms + 10 s + 5 s) = 31 s.
func TestWedgedConsumerFailsLiveness(t *testing.T) {
	s := newStack(t, 3, sim.Config{})
	var wedge atomic.Bool
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	w := s.startWorker(func(st *bridge.Settings) {
		st.FetchHook = func(ctx context.Context, _ string, partition int) {
			if partition != 0 || !wedge.Load() {
				return
			}
			select {
			case blocked <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	})
	s.write(goodRecords(60, 60, 11))
	s.waitAccepted(60, time.Minute)
	if code, body := healthz(t, w); code != http.StatusOK {
		t.Fatalf("/healthz %d %v before the wedge", code, body)
	}

	wedge.Store(true)
	select { // partition 0's loop finishes its fetch (≤ 500 ms) and blocks
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("partition 0's fetch loop did not reach the hook within 30 s")
	}
	s.sim.SetFaults(sim.Faults{OutageFor: sim.Duration(10 * time.Minute)})
	wedgedAt := time.Now()
	s.write(goodRecords(120, 120, 12)) // on every partition: partition 0 has records to fetch
	var body map[string]any
	testutil.WaitFor(t, 90*time.Second, "/healthz to fail on the wedged partition", func() bool {
		var code int
		code, body = healthz(t, w)
		return code == http.StatusServiceUnavailable
	}, func() string { return "last answer: " + jsonString(body) })
	took := time.Since(wedgedAt)
	detail, _ := body["detail"].(string)
	if body["status"] != "wedged" || !strings.Contains(detail, "partition(s) "+s.input+"/0 have") {
		t.Fatalf("/healthz answer %v: want status wedged naming partition 0 only", body)
	}
	if took < 31*time.Second {
		t.Fatalf("/healthz failed %v after the wedge, before the 31 s bound", took)
	}
	if inFlight := w.w.InFlight(); inFlight == 0 {
		t.Fatal("no record in flight during the CXone outage: the test no longer shows that they are exempt")
	}

	close(release)
	testutil.WaitFor(t, 30*time.Second, "/healthz to be ok once the fetch loop moves", func() bool {
		code, _ := healthz(t, w)
		return code == http.StatusOK
	})
	s.sim.SetFaults(sim.Faults{})
	s.waitAccepted(180, 2*time.Minute)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
