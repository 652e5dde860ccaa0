package sim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/sim"
)

// env is a simulator behind a real HTTP server.
type env struct {
	s   *sim.Server
	ts  *httptest.Server
	hc  *http.Client
	url string
}

func newEnv(t *testing.T, cfg sim.Config) *env {
	t.Helper()
	s := sim.New(cfg)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &env{s: s, ts: ts, hc: ts.Client(), url: ts.URL}
}

// newBubbleEnv is a simulator whose client calls its handler in process,
// without a network: for tests on synctest's fake clock, where time is the
// subject (a connection's I/O is not something the bubble can wait for).
func newBubbleEnv(t *testing.T, cfg sim.Config) *env {
	t.Helper()
	s := sim.New(cfg)
	return &env{s: s, hc: &http.Client{Transport: handlerTransport{s.Handler()}}, url: "http://sim.test"}
}

// handlerTransport answers a request by calling h.
type handlerTransport struct{ h http.Handler }

func (tr handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	tr.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// result is a read response.
type result struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body as an object.
func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// str returns a string member of the JSON body.
func (r result) str(t *testing.T, name string) string {
	t.Helper()
	s, _ := r.json(t)[name].(string)
	return s
}

func (e *env) do(t *testing.T, method, path string, h http.Header, body io.Reader) result {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

const (
	tokenPath   = "/api/v2/authorization/token"
	publishPath = "/api/v2/events/publish"
)

// token gets a token in the json style with the default credentials.
func (e *env) token(t *testing.T) string {
	t.Helper()
	return fetchToken(t, e.hc, e.url)
}

// eventBody is a valid publish body for correlation id id with data (a JSON object or "").
func eventBody(id, data string) string {
	if data == "" {
		data = `{"orderId":42}`
	}
	return `{"eventType":"order.created","source":"shop","timestamp":"2024-01-02T03:04:05.678Z",` +
		`"correlationId":"` + id + `","traceId":"trace-` + id + `","data":` + data + `}`
}

// pubHeaders are the headers matching eventBody(id, …).
func pubHeaders(tok, id string) http.Header {
	h := http.Header{}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Correlation-ID", id)
	h.Set("X-Trace-ID", "trace-"+id)
	h.Set("X-Source-System", "shop")
	return h
}

// publish sends eventBody(id, data) with matching headers.
func (e *env) publish(t *testing.T, tok, id, data string) result {
	t.Helper()
	return e.do(t, http.MethodPost, publishPath, pubHeaders(tok, id), strings.NewReader(eventBody(id, data)))
}

func wantStatus(t *testing.T, r result, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
}

// fetchToken gets a token in the json style with the default credentials.
func fetchToken(tb testing.TB, hc *http.Client, base string) string {
	tb.Helper()
	resp, err := hc.Post(base+tokenPath, "application/json",
		strings.NewReader(`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret","scope":"event:publish"}`))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("token: %d %s", resp.StatusCode, raw)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(raw, &tr); err != nil || tr.AccessToken == "" {
		tb.Fatalf("token response %s: %v", raw, err)
	}
	return tr.AccessToken
}
