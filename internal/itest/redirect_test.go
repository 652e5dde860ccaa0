package itest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// landingPage is where the redirects point: it answers 200 to everything
// and counts the requests. A followed redirect would show there.
func landingPage(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = io.WriteString(w, `{"access_token":"not-from-cxone","token_type":"bearer","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

// A publish endpoint that redirects (302) to a page answering 200 is not
// CXone accepting: at the shipped defaults the record is retried, never
// counted accepted, its offset not committed and the page never requested,
// for more attempts than the retry budget; once the redirect stops it is
// accepted.
func TestRedirectIsNotAccepted(t *testing.T) {
	landing, landed := landingPage(t)
	s := newStack(t, 1, sim.Config{})
	w := s.startWorker(shippedCXone(t))
	warm := s.warmUp(1, time.Minute)
	s.waitCommitted(time.Minute)
	held := s.offsets()
	before := s.sim.Stats()

	target := landing + "/welcome"
	s.sim.SetFaults(sim.Faults{ForceStatus: http.StatusFound, Location: target})
	s.write(keyedRecords(1, 1, 13))
	const redirects = 5 // more than the 4 attempts of the shipped budget
	testutil.WaitFor(t, time.Minute, fmt.Sprintf("%d publishes answered 302", redirects), func() bool {
		if _, settled := w.metric("cxbridge_records_settled_total", "result"); settled["accepted"] != float64(len(warm)) {
			t.Fatalf("settled %v while every publish is redirected (the redirect target was requested %d times)", settled, landed.Load())
		}
		if dl, by := w.metric("cxbridge_dead_letters_total", "reason"); dl != 0 {
			t.Fatalf("dead-lettered while every publish is redirected: %v", by)
		}
		return s.sim.Stats().ByStatus[http.StatusFound] >= redirects
	}, func() string { return fmt.Sprintf("simulator %+v", s.sim.Stats()) })

	if got := s.sim.Stats().Distinct; got != before.Distinct {
		t.Errorf("%d events accepted while every publish was redirected", got-before.Distinct)
	}
	if o := s.offsets(); o.Committed[0] != held.Committed[0] {
		t.Errorf("committed %d while the record was redirected, want %d (its offset)", o.Committed[0], held.Committed[0])
	}
	if _, settled := w.metric("cxbridge_records_settled_total", "result"); settled["accepted"] != float64(len(warm)) {
		t.Errorf("records settled %v while redirected: want only the %d warm-up records accepted", settled, len(warm))
	}
	if _, attempts := w.metric("cxbridge_publish_attempts_total", "outcome"); attempts["redirect"] < redirects {
		t.Errorf("attempts %v: want at least %d with outcome redirect", attempts, redirects)
	}
	if n := len(s.dlqRecords()); n != 0 {
		t.Errorf("%d records dead-lettered while every publish was redirected", n)
	}

	s.sim.SetFaults(sim.Faults{})
	s.waitAccepted(before.Distinct+1, 2*time.Minute)
	o := s.waitCommitted(time.Minute)
	w.stop(t)
	if o.Committed[0] != held.Committed[0]+1 {
		t.Errorf("committed %d, want %d", o.Committed[0], held.Committed[0]+1)
	}
	if n := landed.Load(); n != 0 {
		t.Errorf("the redirect target was requested %d times", n)
	}
	if n := len(s.dlqRecords()); n != 0 {
		t.Errorf("%d records dead-lettered", n)
	}
	if st := s.sim.Stats(); st.Distinct != int64(len(warm)+1) || st.Duplicates != 0 {
		t.Errorf("simulator %+v: want %d distinct events, no duplicates", st, len(warm)+1)
	}
}

// A token endpoint that redirects gives no token, even though the page it
// points to hands one out: at the shipped defaults the worker is not ready,
// /readyz and the log name the redirect and its Location, the record waits
// (neither published nor dead-lettered) and is accepted once the token
// endpoint answers again.
func TestTokenRedirectIsAConfigError(t *testing.T) {
	landing, landed := landingPage(t)
	target := landing + "/api/v2/authorization/token"
	s := newStack(t, 1, sim.Config{Faults: sim.Faults{TokenStatus: http.StatusMovedPermanently, Location: target}})
	logs := &testutil.SyncBuffer{}
	s.logs = io.MultiWriter(logs, verboseLogs())
	w := s.startWorker(shippedCXone(t))
	s.write(keyedRecords(1, 1, 14))
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		w.w.Admin().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	testutil.WaitFor(t, time.Minute, "/readyz to name the token redirect", func() bool {
		code, body := readyz()
		// Named as a warning: CXone's side does not take the member out of service.
		return code == http.StatusOK && strings.Contains(body, `"warnings"`) && strings.Contains(body, "token endpoint redirects") && strings.Contains(body, "Location "+target)
	}, func() string { code, body := readyz(); return fmt.Sprintf("/readyz %d %s", code, body) })
	if _, by := w.metric("cxbridge_token_refreshes_total", "result"); by["config_error"] < 1 {
		t.Errorf("token refreshes %v: want a config_error", by)
	}
	if l := logs.String(); !strings.Contains(l, "token request failed") || !strings.Contains(l, "Location "+target) {
		t.Errorf("no log line names the token redirect: %s", l)
	}
	if st := s.sim.Stats(); st.Requests != 0 || st.TokensIssued != 0 {
		t.Errorf("simulator %+v: nothing may be published without a token", st)
	}

	s.sim.SetFaults(sim.Faults{})
	s.waitAccepted(1, 2*time.Minute)
	s.waitCommitted(time.Minute)
	if _, body := readyz(); strings.Contains(body, "token endpoint redirects") {
		t.Errorf("/readyz still names the redirect once a token was had: %s", body)
	}
	w.stop(t)
	if n := landed.Load(); n != 0 {
		t.Errorf("the redirect target was requested %d times", n)
	}
	if n := len(s.dlqRecords()); n != 0 {
		t.Errorf("%d records dead-lettered while the token endpoint redirected", n)
	}
}
