package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
)

func TestLatency(t *testing.T) {
	e := newEnv(t, sim.Config{Faults: sim.Faults{Latency: sim.Duration(40 * time.Millisecond), LatencyJitter: sim.Duration(20 * time.Millisecond)}})
	tok := e.token(t) // token requests get no latency
	for i := range 3 {
		start := time.Now()
		wantStatus(t, e.publish(t, tok, "lat", ""), 200)
		if el := time.Since(start); el < 40*time.Millisecond {
			t.Fatalf("publish %d took %v, want ≥ 40ms", i, el)
		}
	}
}

func TestLatencyEndsWithTheRequest(t *testing.T) {
	e := newEnv(t, sim.Config{Faults: sim.Faults{Latency: sim.Duration(time.Hour)}})
	tok := e.token(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+publishPath, strings.NewReader(eventBody("gone", "")))
	req.Header = pubHeaders(tok, "gone")
	if resp, err := e.hc.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("want a deadline error, got %v", err)
	}
	// Close waits for every handler: the waiting one must have returned.
	closed := make(chan struct{})
	go func() { e.ts.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler still waits after the client left")
	}
	if st := e.s.Stats(); st.Accepted != 0 || len(st.ByStatus) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestErrorRate(t *testing.T) {
	e := newEnv(t, sim.Config{Faults: sim.Faults{ErrorRate: 1}})
	tok := e.token(t)
	for range 10 {
		wantStatus(t, e.publish(t, tok, "er", ""), http.StatusServiceUnavailable)
	}
	e.s.SetFaults(sim.Faults{ErrorRate: 0.5})
	for i := 0; ; i++ {
		st := e.s.Stats()
		if st.ByStatus[200] > 0 && st.ByStatus[503] > 10 {
			break
		}
		if i == 200 {
			t.Fatalf("error rate 0.5: %v", st.ByStatus)
		}
		_ = e.publish(t, tok, "er", "")
	}
}

// An outage answers 503 to publish and token requests for its window,
// then serves normally. Runs on synctest's fake clock: the window is a time.
func TestOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, sim.Config{})
		tok := e.token(t)
		const window = 300 * time.Millisecond
		e.s.SetFaults(sim.Faults{OutageFor: sim.Duration(window)})
		set := time.Now()
		r := e.publish(t, tok, "out", "")
		wantStatus(t, r, http.StatusServiceUnavailable)
		tr := e.do(t, http.MethodPost, tokenPath, jsonHeader(),
			strings.NewReader(`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret"}`))
		wantStatus(t, tr, http.StatusServiceUnavailable)
		if tr.str(t, "error") != "temporarily_unavailable" {
			t.Fatalf("token body %s", tr.body)
		}
		time.Sleep(time.Until(set.Add(window - time.Millisecond)))
		wantStatus(t, e.publish(t, tok, "out", ""), http.StatusServiceUnavailable) // still inside the window
		time.Sleep(2 * time.Millisecond)
		wantStatus(t, e.publish(t, tok, "out", ""), 200)
		_ = e.token(t)
		if got := e.s.Faults().OutageFor; got != sim.Duration(window) {
			t.Fatalf("Faults().OutageFor = %v", got)
		}
	})
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	for _, c := range []struct{ retryAfter, want string }{{"", "1"}, {"7", "7"}} {
		e.s.SetFaults(sim.Faults{RateLimit: 1, RetryAfter: c.retryAfter}) // burst 1, one more per second
		wantStatus(t, e.publish(t, tok, "rl", ""), 200)
		for range 2 {
			r := e.publish(t, tok, "rl", "")
			wantStatus(t, r, http.StatusTooManyRequests)
			if got := r.header.Get("Retry-After"); got != c.want {
				t.Fatalf("Retry-After %q, want %q", got, c.want)
			}
		}
	}
	if st := e.s.Stats(); st.ByStatus[429] != 4 || st.Accepted != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTokenExpiryFault(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	wantStatus(t, e.publish(t, tok, "te", ""), 200)
	e.s.SetFaults(sim.Faults{TokenExpiry: 1}) // 1ns: every token is too old
	r := e.publish(t, tok, "te", "")
	wantStatus(t, r, http.StatusUnauthorized)
	if !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	e.s.SetFaults(sim.Faults{TokenExpiry: sim.Duration(time.Hour)})
	wantStatus(t, e.publish(t, tok, "te", ""), 200)
}

func TestForbidEventType(t *testing.T) {
	e := newEnv(t, sim.Config{Faults: sim.Faults{ForbidEventType: "order.created"}})
	tok := e.token(t)
	r := e.publish(t, tok, "fb", "")
	wantStatus(t, r, http.StatusForbidden)
	if r.str(t, "field") != "eventType" {
		t.Fatalf("403 body %s", r.body)
	}
	body := strings.Replace(eventBody("fb2", ""), "order.created", "order.paid", 1)
	wantStatus(t, e.do(t, http.MethodPost, publishPath, pubHeaders(tok, "fb2"), strings.NewReader(body)), 200)
}

func TestScript(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	e.s.SetFaults(sim.Faults{Script: []sim.Response{
		{Status: 503}, {Status: 429, RetryAfter: "3"}, {Status: 400, Body: `{"error":"custom"}`}, {Status: 0}, {Status: 200},
	}})
	wantStatus(t, e.publish(t, "", "s0", ""), 401) // not consumed: before the auth check passes
	r := e.publish(t, tok, "s1", "")
	wantStatus(t, r, 503)
	if r.str(t, "error") != "service_unavailable" {
		t.Fatalf("body %s", r.body)
	}
	r = e.publish(t, tok, "s2", "")
	wantStatus(t, r, 429)
	if r.header.Get("Retry-After") != "3" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if got := e.s.Faults().Script; len(got) != 3 || got[0].Status != 400 {
		t.Fatalf("remaining script %+v", got)
	}
	r = e.publish(t, tok, "s3", "")
	wantStatus(t, r, 400)
	if string(r.body) != `{"error":"custom"}` || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("scripted body %q %q", r.body, r.header.Get("Content-Type"))
	}
	for _, id := range []string{"s4", "s5", "s6"} { // 0 and 200 process normally, then the script is done
		wantStatus(t, e.publish(t, tok, id, ""), 200)
		if _, ok := e.s.Lookup(id); !ok {
			t.Fatalf("%s not recorded", id)
		}
	}
	if got := e.s.Faults().Script; got != nil {
		t.Fatalf("script left: %+v", got)
	}
}

func TestForceStatus(t *testing.T) {
	e := newEnv(t, sim.Config{Faults: sim.Faults{ForceStatus: 500}})
	tok := e.token(t)
	for range 3 {
		r := e.publish(t, tok, "fs", "")
		wantStatus(t, r, 500)
		if r.str(t, "error") != "internal_server_error" {
			t.Fatalf("body %s", r.body)
		}
	}
	e.s.SetFaults(sim.Faults{ForceStatus: 429, RetryAfter: "2"})
	r := e.publish(t, tok, "fs", "")
	wantStatus(t, r, 429)
	if r.header.Get("Retry-After") != "2" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	e.s.SetFaults(sim.Faults{ForceStatus: 404})
	wantStatus(t, e.publish(t, tok, "fs", ""), 404)
	e.s.SetFaults(sim.Faults{})
	wantStatus(t, e.publish(t, tok, "fs", ""), 200)
}

func TestTokenStatus(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	for status, code := range map[int]string{401: "invalid_client", 400: "invalid_grant", 503: "temporarily_unavailable", 500: "server_error"} {
		e.s.SetFaults(sim.Faults{TokenStatus: status})
		r := e.do(t, http.MethodPost, tokenPath, jsonHeader(),
			strings.NewReader(`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret"}`))
		wantStatus(t, r, status)
		if r.str(t, "error") != code {
			t.Fatalf("status %d: body %s", status, r.body)
		}
		wantStatus(t, e.publish(t, tok, "ts", ""), 200) // tokens already issued still work
	}
	e.s.SetFaults(sim.Faults{})
	_ = e.token(t)
}

func TestAdminFaultsRoundTrip(t *testing.T) {
	e := newEnv(t, sim.Config{})
	in := `{"latency":"20ms","latency_jitter":"5ms","error_rate":0.25,"outage_for":"1ms","rate_limit":1000,
		"retry_after":"Wed, 21 Oct 2015 07:28:00 GMT","token_expiry":"1m30s","forbid_event_type":"x.y",
		"script":[{"status":503},{"status":429,"retry_after":"2","body":"slow down"}],"force_status":502,"token_status":401}`
	want := sim.Faults{
		Latency: sim.Duration(20 * time.Millisecond), LatencyJitter: sim.Duration(5 * time.Millisecond), ErrorRate: 0.25,
		OutageFor: sim.Duration(time.Millisecond), RateLimit: 1000, RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT",
		TokenExpiry: sim.Duration(90 * time.Second), ForbidEventType: "x.y",
		Script:      []sim.Response{{Status: 503}, {Status: 429, RetryAfter: "2", Body: "slow down"}},
		ForceStatus: 502, TokenStatus: 401,
	}
	put := e.do(t, http.MethodPut, "/sim/faults", jsonHeader(), strings.NewReader(in))
	wantStatus(t, put, 200)
	if got := e.s.Faults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Faults() = %+v, want %+v", got, want)
	}
	get := e.do(t, http.MethodGet, "/sim/faults", nil, nil)
	wantStatus(t, get, 200)
	if string(get.body) != string(put.body) || !strings.Contains(string(get.body), `"token_expiry":"1m30s"`) {
		t.Fatalf("GET %s, PUT answered %s", get.body, put.body)
	}
	var back sim.Faults
	if err := json.Unmarshal(get.body, &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Fatalf("decoded %+v (%v)", back, err)
	}

	for _, bad := range []string{
		`{"latency":20}`, `{"latency":"soon"}`, `{"latency":"-1s"}`, `{"error_rate":2}`, `{"rate_limit":-1}`,
		`{"force_status":42}`, `{"token_status":600}`, `{"script":[{"status":1000}]}`, `{"retry_after":"soon"}`,
		`{"unknown":1}`, `not json`, `{} {}`,
	} {
		r := e.do(t, http.MethodPut, "/sim/faults", jsonHeader(), strings.NewReader(bad))
		if r.status != 400 || r.str(t, "error") != "invalid_faults" {
			t.Errorf("PUT %s: %d %s", bad, r.status, r.body)
		}
	}
	if got := e.s.Faults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("a refused PUT changed the faults: %+v", got)
	}
	wantStatus(t, e.do(t, http.MethodPut, "/sim/faults", jsonHeader(), strings.NewReader(`{}`)), 200)
	if get := e.do(t, http.MethodGet, "/sim/faults", nil, nil); string(get.body) != "{}" {
		t.Fatalf("no faults: %s", get.body)
	}
	wantStatus(t, e.do(t, http.MethodDelete, "/sim/faults", nil, nil), http.StatusMethodNotAllowed)
}

func TestAdminStatsResetHealth(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	wantStatus(t, e.publish(t, tok, "st1", `{"key":"k","seq":1}`), 200)
	wantStatus(t, e.publish(t, tok, "st1", `{"key":"k","seq":1}`), 200)
	wantStatus(t, e.publish(t, "", "st2", ""), 401)
	r := e.do(t, http.MethodGet, "/sim/stats", nil, nil)
	wantStatus(t, r, 200)
	want := `{"requests":3,"accepted":2,"distinct":1,"duplicates":1,"by_status":{"200":2,"401":1},"token_requests":1,"tokens_issued":1,"keys":1,"order_violations":0}`
	if string(r.body) != want {
		t.Fatalf("stats %s\nwant  %s", r.body, want)
	}
	e.s.SetFaults(sim.Faults{ErrorRate: 0.5, Script: []sim.Response{{Status: 500}}})
	wantStatus(t, e.do(t, http.MethodPost, "/sim/reset", nil, nil), http.StatusNoContent)
	if st := e.s.Stats(); !reflect.DeepEqual(st, sim.Stats{ByStatus: map[int]int64{}}) {
		t.Fatalf("stats after reset %+v", st)
	}
	if _, ok := e.s.Lookup("st1"); ok || e.s.KeySequence("k") != nil {
		t.Fatal("reset kept accepted events")
	}
	if f := e.s.Faults(); f.Script != nil || f.ErrorRate != 0.5 {
		t.Fatalf("faults after reset %+v", f)
	}
	e.s.SetFaults(sim.Faults{})
	wantStatus(t, e.publish(t, tok, "st1", ""), 200) // tokens survive a reset
	h := e.do(t, http.MethodGet, "/healthz", nil, nil)
	wantStatus(t, h, 200)
	if string(h.body) != "ok\n" {
		t.Fatalf("healthz %q", h.body)
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(sim.Duration(1500 * time.Millisecond))
	if err != nil || string(b) != `"1.5s"` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var d sim.Duration
	for in, want := range map[string]sim.Duration{`"20ms"`: sim.Duration(20 * time.Millisecond), `""`: 0, `null`: 0} {
		d = 7
		if in == "null" {
			want = 7 // null leaves the value alone
		}
		if err := json.Unmarshal([]byte(in), &d); err != nil || d != want {
			t.Fatalf("unmarshal %s: %v %v", in, d, err)
		}
	}
	if err := json.Unmarshal([]byte(`20`), &d); err == nil {
		t.Fatal("a bare number was accepted")
	}
}

// A flapping outage answers 503 (publish and token) in its down phases
// and serves normally in its up phases, for flap_for in all. Runs on
// synctest's fake clock: the phases are windows of time.
func TestFlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, sim.Config{})
		tok := e.token(t)
		const down, up, total = 300 * time.Millisecond, 300 * time.Millisecond, 1500 * time.Millisecond
		e.s.SetFaults(sim.Faults{FlapDown: sim.Duration(down), FlapUp: sim.Duration(up), FlapFor: sim.Duration(total)})
		set := time.Now()
		checks := []struct {
			at         time.Duration
			status     int
			tokenCheck bool
		}{
			{0, http.StatusServiceUnavailable, true},
			{down - time.Millisecond, http.StatusServiceUnavailable, false}, // the down phase's last moment
			{down + time.Millisecond, http.StatusOK, true},
			{down + up/2, http.StatusOK, true},
			{down + up + down/2, http.StatusServiceUnavailable, false},
			{2*down + up + up/2, http.StatusOK, false},
			{total + 50*time.Millisecond, http.StatusOK, true},           // flapping over
			{total + down/2 + 50*time.Millisecond, http.StatusOK, false}, // a down phase, were it still flapping
		}
		for _, c := range checks {
			time.Sleep(time.Until(set.Add(c.at)))
			if r := e.publish(t, tok, "flap", ""); r.status != c.status {
				t.Errorf("publish at %v: status %d, want %d (%s)", c.at, r.status, c.status, r.body)
			}
			if c.tokenCheck {
				tr := e.do(t, http.MethodPost, tokenPath, jsonHeader(),
					strings.NewReader(`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret"}`))
				if tr.status != c.status {
					t.Errorf("token at %v: status %d, want %d (%s)", c.at, tr.status, c.status, tr.body)
				}
			}
		}
		if f := e.s.Faults(); f.FlapDown != sim.Duration(down) || f.FlapUp != sim.Duration(up) || f.FlapFor != sim.Duration(total) {
			t.Fatalf("Faults() %+v", f)
		}
	})
}

// A failing correlation id is answered 500 every time; other events are
// accepted meanwhile.
func TestFailCorrelationIDs(t *testing.T) {
	e := newEnv(t, sim.Config{Faults: sim.Faults{FailCorrelationIDs: []string{"poison", "poison-2"}}})
	tok := e.token(t)
	for range 3 {
		r := e.publish(t, tok, "poison", "")
		wantStatus(t, r, http.StatusInternalServerError)
		if r.str(t, "error") != "internal_server_error" {
			t.Fatalf("body %s", r.body)
		}
		wantStatus(t, e.publish(t, tok, "healthy", ""), http.StatusOK)
	}
	wantStatus(t, e.publish(t, tok, "poison-2", ""), http.StatusInternalServerError)
	// Checked after the body: a broken poison event is still a 400.
	wantStatus(t, e.do(t, http.MethodPost, publishPath, pubHeaders(tok, "poison"), strings.NewReader(`{}`)), http.StatusBadRequest)
	if _, ok := e.s.Lookup("poison"); ok {
		t.Fatal("the failing id was recorded as accepted")
	}
	if st := e.s.Stats(); st.ByStatus[500] != 4 || st.Accepted != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// Forced, scripted and token-status 3xx answers carry the Location fault.
func TestRedirectLocation(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	e.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	const loc = "https://elsewhere.example/landing"
	e.s.SetFaults(sim.Faults{ForceStatus: http.StatusFound, Location: loc})
	r := e.publish(t, tok, "moved", "")
	wantStatus(t, r, http.StatusFound)
	if got := r.header.Get("Location"); got != loc {
		t.Fatalf("Location %q, want %q", got, loc)
	}
	e.s.SetFaults(sim.Faults{Script: []sim.Response{{Status: http.StatusPermanentRedirect}, {Status: http.StatusServiceUnavailable}}, Location: loc})
	if r := e.publish(t, tok, "moved", ""); r.status != http.StatusPermanentRedirect || r.header.Get("Location") != loc {
		t.Fatalf("scripted 308: %d Location %q", r.status, r.header.Get("Location"))
	}
	if r := e.publish(t, tok, "moved", ""); r.status != http.StatusServiceUnavailable || r.header.Get("Location") != "" {
		t.Fatalf("scripted 503: %d Location %q", r.status, r.header.Get("Location"))
	}
	e.s.SetFaults(sim.Faults{TokenStatus: http.StatusMovedPermanently, Location: loc})
	tr := e.do(t, http.MethodPost, tokenPath, jsonHeader(),
		strings.NewReader(`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret"}`))
	if tr.status != http.StatusMovedPermanently || tr.header.Get("Location") != loc {
		t.Fatalf("token 301: %d Location %q", tr.status, tr.header.Get("Location"))
	}
	e.s.SetFaults(sim.Faults{})
	if r := e.publish(t, tok, "moved", ""); r.status != http.StatusOK || r.header.Get("Location") != "" {
		t.Fatalf("no faults: %d Location %q", r.status, r.header.Get("Location"))
	}
}

// The new faults are refused when unusable, and round-trip through the admin API.
func TestAdminNewFaults(t *testing.T) {
	e := newEnv(t, sim.Config{})
	for _, bad := range []string{
		`{"flap_down":"1s"}`, `{"flap_up":"1s"}`, `{"flap_down":"-1s","flap_up":"1s"}`, `{"flap_for":"1s"}`,
		`{"location":"http://[::1"}`, `{"fail_correlation_ids":"x"}`,
	} {
		r := e.do(t, http.MethodPut, "/sim/faults", jsonHeader(), strings.NewReader(bad))
		if r.status != 400 || r.str(t, "error") != "invalid_faults" {
			t.Errorf("PUT %s: %d %s", bad, r.status, r.body)
		}
	}
	in := `{"location":"https://x.example/","flap_down":"5s","flap_up":"5s","flap_for":"1m0s","fail_correlation_ids":["a","b"]}`
	wantStatus(t, e.do(t, http.MethodPut, "/sim/faults", jsonHeader(), strings.NewReader(in)), 200)
	get := e.do(t, http.MethodGet, "/sim/faults", nil, nil)
	if string(get.body) != in {
		t.Fatalf("GET %s, want %s", get.body, in)
	}
}
