package admin

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The status page is self-contained (no external assets) and its data
// endpoint serves the snapshot as JSON.
func TestStatusPage(t *testing.T) {
	s := New(prometheus.NewRegistry(), 0)
	page, data := StatusHandlers(func() any { return map[string]any{"breaker": "closed", "in_flight": 7} })
	s.Handle("GET /{$}", page)
	s.Handle("GET /status.json", data)
	url := serve(t, s)

	resp, body := get(t, url+"/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if ext := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindString(body); ext != "" {
		t.Fatalf("the page loads an external asset: %s", ext)
	}
	for _, id := range []string{`id="breaker"`, `id="partitions"`, `id="dlq"`, `id="rate"`, `id="unserved"`, `fetch("status.json"`,
		`fetch("history.json"`, `id="chart-accepted"`, `id="chart-dead"`, `id="chart-lag"`, `id="chart-inflight"`} {
		if !strings.Contains(body, id) {
			t.Errorf("page lacks %s", id)
		}
	}
	resp, body = get(t, url+"/status.json")
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil || got["breaker"] != "closed" || got["in_flight"] != float64(7) {
		t.Fatalf("status.json %d: %s (%v)", resp.StatusCode, body, err)
	}
	if resp, _ := get(t, url+"/nope"); resp.StatusCode != 404 {
		t.Fatalf("unknown path: %d", resp.StatusCode)
	}
}
