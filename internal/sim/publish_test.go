package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
)

func TestPublishAcceptedAndLookup(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	r := e.publish(t, tok, "c-1", `{ "orderId" : 42, "items": [1, 2] }`)
	wantStatus(t, r, http.StatusOK)
	if m := r.json(t); m["status"] != "accepted" || m["correlationId"] != "c-1" {
		t.Fatalf("body %s", r.body)
	}
	a, ok := e.s.Lookup("c-1")
	if !ok {
		t.Fatal("c-1 not recorded")
	}
	if a.EventType != "order.created" || a.Source != "shop" || a.Timestamp != "2024-01-02T03:04:05.678Z" ||
		a.CorrelationID != "c-1" || a.TraceID != "trace-c-1" || a.Count != 1 || string(a.Data) != `{"orderId":42,"items":[1,2]}` {
		t.Fatalf("accepted %+v data %s", a, a.Data)
	}
	if a.Headers.Get("Authorization") != "" || a.Headers.Get("X-Correlation-ID") != "c-1" || a.Headers.Get("X-Source-System") != "shop" {
		t.Fatalf("headers %v", a.Headers)
	}
	if _, ok := e.s.Lookup("nope"); ok {
		t.Fatal("lookup of an unknown id succeeded")
	}

	// The admin view of the same event.
	g := e.do(t, http.MethodGet, "/sim/events/c-1", nil, nil)
	wantStatus(t, g, 200)
	var got sim.Accepted
	if err := json.Unmarshal(g.body, &got); err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("GET /sim/events: %s (%v)", g.body, err)
	}
	wantStatus(t, e.do(t, http.MethodGet, "/sim/events/nope", nil, nil), http.StatusNotFound)

	// A duplicate keeps the first data, counts twice.
	wantStatus(t, e.publish(t, tok, "c-1", `{"orderId":43}`), 200)
	wantStatus(t, e.publish(t, tok, "c-2", ""), 200)
	a, _ = e.s.Lookup("c-1")
	if a.Count != 2 || string(a.Data) != `{"orderId":42,"items":[1,2]}` {
		t.Fatalf("after duplicate: %+v %s", a, a.Data)
	}
	// The listing of every accepted id, as a harness outside the process reads it.
	l := e.do(t, http.MethodGet, "/sim/accepted", nil, nil)
	wantStatus(t, l, 200)
	counts := map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(l.body))
	for dec.More() {
		var line sim.AcceptedLine
		if err := dec.Decode(&line); err != nil {
			t.Fatalf("GET /sim/accepted: %v in %s", err, l.body)
		}
		counts[line.CorrelationID] = line.Count
	}
	if !reflect.DeepEqual(counts, map[string]int{"c-1": 2, "c-2": 1}) || !reflect.DeepEqual(counts, e.s.AcceptedCounts()) {
		t.Fatalf("GET /sim/accepted: %s", l.body)
	}
	st := e.s.Stats()
	want := sim.Stats{Requests: 3, Accepted: 3, Distinct: 2, Duplicates: 1, ByStatus: map[int]int64{200: 3},
		TokenRequests: 1, TokensIssued: 1}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

func TestPublishAuth(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	for name, auth := range map[string]string{
		"missing": "", "not bearer": "Basic " + tok, "unknown": "Bearer sim_not-a-token", "empty bearer": "Bearer ",
	} {
		t.Run(name, func(t *testing.T) {
			h := pubHeaders("", "a1")
			if auth != "" {
				h.Set("Authorization", auth)
			}
			r := e.do(t, http.MethodPost, publishPath, h, strings.NewReader(eventBody("a1", "")))
			wantStatus(t, r, http.StatusUnauthorized)
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	h := pubHeaders("", "a2")
	h.Set("Authorization", "bearer "+tok) // the scheme is case-insensitive
	wantStatus(t, e.do(t, http.MethodPost, publishPath, h, strings.NewReader(eventBody("a2", ""))), 200)
}

func TestPublishBodySize(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	// Exactly 1 MiB (a valid event padded with spaces) is accepted.
	body := eventBody("big", "")
	exact := body + strings.Repeat(" ", 1<<20-len(body))
	wantStatus(t, e.do(t, http.MethodPost, publishPath, pubHeaders(tok, "big"), strings.NewReader(exact)), 200)
	// One byte more is refused, with or without a Content-Length.
	over := exact + " "
	r := e.do(t, http.MethodPost, publishPath, pubHeaders(tok, "big"), strings.NewReader(over))
	wantStatus(t, r, http.StatusRequestEntityTooLarge)
	chunked := io.MultiReader(strings.NewReader(over)) // unknown length: sent chunked
	r = e.do(t, http.MethodPost, publishPath, pubHeaders(tok, "big"), chunked)
	wantStatus(t, r, http.StatusRequestEntityTooLarge)
	if r.str(t, "error") != "too_large" {
		t.Fatalf("413 body %s", r.body)
	}
}

func TestPublishContentType(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	for ct, want := range map[string]int{
		"application/json": 200, "application/json; charset=utf-8": 200, "Application/JSON": 200,
		"text/plain": 415, "": 415, "application/x-www-form-urlencoded": 415, "application/json; bad": 415,
	} {
		h := pubHeaders(tok, "ct")
		h.Set("Content-Type", ct)
		if ct == "" {
			h.Del("Content-Type")
		}
		r := e.do(t, http.MethodPost, publishPath, h, strings.NewReader(eventBody("ct", "")))
		if r.status != want {
			t.Errorf("Content-Type %q: %d, want %d (%s)", ct, r.status, want, r.body)
		}
	}
}

// TestPublishInvalidEvent: 400 naming the field.
func TestPublishInvalidEvent(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	ok := map[string]any{"eventType": "order.created", "source": "shop", "timestamp": "2024-01-02T03:04:05Z",
		"correlationId": "iv", "traceId": "trace-iv", "data": map[string]any{}}
	with := func(k string, v any) string {
		m := map[string]any{}
		for kk, vv := range ok {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := []struct{ name, body, field, reason string }{
		{"not json", `{"eventType":`, "", "invalid_json"},
		{"array", `[1]`, "", "invalid_event"},
		{"no eventType", with("eventType", nil), "eventType", "invalid_event"},
		{"long eventType", with("eventType", strings.Repeat("e", 129)), "eventType", "invalid_event"},
		{"empty source", with("source", ""), "source", "invalid_event"},
		{"bad timestamp", with("timestamp", "2024-01-02 03:04:05"), "timestamp", "invalid_event"},
		{"numeric correlationId", with("correlationId", 5), "correlationId", "invalid_event"},
		{"data not object", with("data", []int{1}), "data", "invalid_event"},
		{"data too large", with("data", map[string]string{"x": strings.Repeat("x", 500_000)}), "data", "too_large"},
		{"no correlationId", with("correlationId", nil), "correlationId", "invalid_event"},
		{"no traceId", with("traceId", nil), "traceId", "invalid_event"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, http.MethodPost, publishPath, pubHeaders(tok, "iv"), strings.NewReader(c.body))
			wantStatus(t, r, http.StatusBadRequest)
			m := r.json(t)
			field, _ := m["field"].(string)
			if m["error"] != "invalid_event" || field != c.field || m["reason"] != c.reason || m["message"] == "" {
				t.Fatalf("body %s; want field %q reason %q", r.body, c.field, c.reason)
			}
		})
	}
	if st := e.s.Stats(); st.Accepted != 0 || st.ByStatus[400] != int64(len(cases)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestPublishHeaders(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	for _, hdr := range []string{"X-Correlation-ID", "X-Trace-ID", "X-Source-System"} {
		for _, mode := range []string{"missing", "different"} {
			t.Run(hdr+" "+mode, func(t *testing.T) {
				h := pubHeaders(tok, "hd")
				if mode == "missing" {
					h.Del(hdr)
				} else {
					h.Set(hdr, "other")
				}
				r := e.do(t, http.MethodPost, publishPath, h, strings.NewReader(eventBody("hd", "")))
				wantStatus(t, r, http.StatusBadRequest)
				if m := r.json(t); m["error"] != "invalid_header" || m["header"] != hdr || m["field"] != hdr {
					t.Fatalf("body %s", r.body)
				}
			})
		}
	}
}

// TestPublishCheckOrder: of two faults in one request, the earlier check answers.
func TestPublishCheckOrder(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	scoped := e.do(t, http.MethodPost, tokenPath, jsonHeader(), strings.NewReader(
		`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret","scope":"other"}`)).str(t, "access_token")
	big := strings.Repeat(" ", 1<<20+1)
	type req struct {
		tok, ct, body string
		hdr           bool // send matching headers
	}
	good := eventBody("o", "")
	forbidden := strings.Replace(good, "order.created", "order.forbidden", 1)
	cases := []struct {
		name   string
		faults sim.Faults
		r      req
		want   int
	}{
		{"outage beats missing token", sim.Faults{OutageFor: sim.Duration(time.Hour)}, req{"", "text/plain", "x", false}, 503},
		{"missing token beats bad body", sim.Faults{}, req{"", "application/json", "not json", true}, 401},
		{"missing token beats script", sim.Faults{Script: []sim.Response{{Status: 500}}}, req{"", "application/json", good, true}, 401},
		{"script beats force", sim.Faults{Script: []sim.Response{{Status: 502}}, ForceStatus: 500}, req{tok, "application/json", good, true}, 502},
		{"script beats scope", sim.Faults{Script: []sim.Response{{Status: 502}}}, req{scoped, "application/json", good, true}, 502},
		{"force beats scope", sim.Faults{ForceStatus: 500}, req{scoped, "application/json", good, true}, 500},
		{"scope beats size", sim.Faults{}, req{scoped, "application/json", big, true}, 403},
		{"size beats content type", sim.Faults{}, req{tok, "text/plain", big, true}, 413},
		{"content type beats body", sim.Faults{}, req{tok, "text/plain", "not json", true}, 415},
		{"body beats headers", sim.Faults{}, req{tok, "application/json", "not json", false}, 400},
		{"headers beat forbidden type", sim.Faults{ForbidEventType: "order.forbidden"}, req{tok, "application/json", forbidden, false}, 400},
		{"forbidden type beats error rate", sim.Faults{ForbidEventType: "order.forbidden", ErrorRate: 1}, req{tok, "application/json", forbidden, true}, 403},
		{"error rate beats rate limit", sim.Faults{ErrorRate: 1, RateLimit: 1e-9}, req{tok, "application/json", good, true}, 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.s.SetFaults(c.faults)
			defer e.s.SetFaults(sim.Faults{})
			h := http.Header{}
			if c.r.hdr {
				h = pubHeaders("", "o")
			}
			if c.r.tok != "" {
				h.Set("Authorization", "Bearer "+c.r.tok)
			}
			h.Set("Content-Type", c.r.ct)
			wantStatus(t, e.do(t, http.MethodPost, publishPath, h, strings.NewReader(c.r.body)), c.want)
		})
	}
	// Rate limit beats accepting: the bucket holds one token, then 429.
	e.s.SetFaults(sim.Faults{RateLimit: 1e-9})
	wantStatus(t, e.publish(t, tok, "o1", ""), 200)
	wantStatus(t, e.publish(t, tok, "o2", ""), 429)
}

func TestOrderTracking(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	send := func(id, key string, seq any) {
		t.Helper()
		d, _ := json.Marshal(map[string]any{"key": key, "seq": seq})
		wantStatus(t, e.publish(t, tok, id, string(d)), 200)
	}
	send("a1", "a", 1)
	send("a2", "a", 2)
	send("b1", "b", 7)
	send("a3", "a", 3)
	send("a2", "a", 2) // a redelivery: not a violation
	send("a5", "a", 5)
	send("a4", "a", 4) // late: a violation
	send("b0", "b", 6) // late: a violation
	send("a6", "a", 6.0)
	wantStatus(t, e.publish(t, tok, "nokey", `{"seq":1}`), 200)
	wantStatus(t, e.publish(t, tok, "strseq", `{"key":"c","seq":"1"}`), 200)
	if got := e.s.KeySequence("a"); !reflect.DeepEqual(got, []int64{1, 2, 3, 2, 5, 4, 6}) {
		t.Fatalf("KeySequence(a) = %v", got)
	}
	if got := e.s.KeySequence("b"); !reflect.DeepEqual(got, []int64{7, 6}) {
		t.Fatalf("KeySequence(b) = %v", got)
	}
	if got := e.s.KeySequence("c"); got != nil {
		t.Fatalf("KeySequence(c) = %v", got)
	}
	if st := e.s.Stats(); st.Keys != 2 || st.OrderViolations != 2 || st.Duplicates != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConcurrentPublishes(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	const workers, per = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				id := fmt.Sprintf("id-%d", (w*per+i)%(workers*per/2)) // every id twice
				body := eventBody(id, fmt.Sprintf(`{"key":"k%d","seq":%d}`, w, i))
				req, _ := http.NewRequest(http.MethodPost, e.url+publishPath, bytes.NewReader([]byte(body)))
				req.Header = pubHeaders(tok, id)
				resp, err := e.hc.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	for range 20 { // readers meanwhile
		_ = e.s.Stats()
		_, _ = e.s.Lookup("id-1")
		_ = e.s.KeySequence("k1")
	}
	wg.Wait()
	st := e.s.Stats()
	if st.Accepted != workers*per || st.Distinct != workers*per/2 || st.Duplicates != workers*per/2 ||
		st.Keys != workers || st.OrderViolations != 0 {
		t.Fatalf("stats %+v", st)
	}
	for w := range workers {
		if n := len(e.s.KeySequence(fmt.Sprintf("k%d", w))); n != per {
			t.Fatalf("key k%d: %d arrivals", w, n)
		}
	}
}

func TestPublishOddCorrelationID(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	id := "we\"ird\\id\tü/€"
	body, _ := json.Marshal(map[string]any{"eventType": "x", "source": "shop", "timestamp": "2024-01-02T03:04:05Z",
		"correlationId": id, "traceId": "trace-" + id})
	r := e.do(t, http.MethodPost, publishPath, pubHeaders(tok, id), bytes.NewReader(body))
	wantStatus(t, r, 200)
	if got := r.str(t, "correlationId"); got != id {
		t.Fatalf("correlationId %q, want %q", got, id)
	}
	if a, ok := e.s.Lookup(id); !ok || string(a.Data) != "{}" {
		t.Fatalf("lookup %+v %v", a, ok)
	}
	// The admin route takes the id path-escaped.
	wantStatus(t, e.do(t, http.MethodGet, "/sim/events/"+url.PathEscape(id), nil, nil), 200)
}
