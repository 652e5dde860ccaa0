package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, "127.0.0.1:0", h, slog.New(slog.DiscardHandler), func(a net.Addr) { addrc <- a })
	}()
	addr := <-addrc
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + addr.String()
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// /readyz is 200 when every component is ready and 503 with every reason
// when one is not; it follows the components live. An advisory component
// that is not ready is a warning, and the answer stays 200.
func TestReadyz(t *testing.T) {
	var breakerOpen, consumerOut atomic.Bool
	s := New(prometheus.NewRegistry(), 0,
		Component{Name: "consumer", Check: func() (bool, string) {
			if consumerOut.Load() {
				return false, "not a member of the group"
			}
			return true, "generation 3, 6 partitions"
		}},
		Component{Name: "cxone_breaker", Advisory: true, Check: func() (bool, string) {
			if breakerOpen.Load() {
				return false, "circuit breaker open"
			}
			return true, "closed"
		}},
	)
	url := serve(t, s)
	resp, body := get(t, url+"/readyz")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	breakerOpen.Store(true)
	resp, body = get(t, url+"/readyz")
	var r Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !r.Ready || len(r.Reasons) != 0 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "cxone_breaker: circuit breaker open") ||
		!r.Components["cxone_breaker"].Advisory || r.Components["cxone_breaker"].Ready {
		t.Fatalf("an advisory component not ready: status %d, %+v; want 200 with a warning", resp.StatusCode, r)
	}
	consumerOut.Store(true)
	resp, body = get(t, url+"/readyz")
	r = Readiness{}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || r.Ready || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "consumer: not a member") ||
		r.Components["consumer"].Ready || r.Components["consumer"].Advisory {
		t.Fatalf("status %d, %+v", resp.StatusCode, r)
	}
}

// /healthz is 200 while the loop beats and 503 once it stalls.
func TestHealthz(t *testing.T) {
	s := New(prometheus.NewRegistry(), 50*time.Millisecond)
	url := serve(t, s)
	if resp, _ := get(t, url+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	time.Sleep(80 * time.Millisecond) // no Beat: the loop looks stalled
	if resp, body := get(t, url+"/healthz"); resp.StatusCode != 503 || !strings.Contains(body, "stalled") {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	s.Beat()
	if resp, _ := get(t, url+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("after a beat: status %d", resp.StatusCode)
	}
}

// /metrics serves the registry, as OpenMetrics when asked.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	url := serve(t, New(reg, 0))
	resp, body := get(t, url+"/metrics", "Accept", "application/openmetrics-text; version=1.0.0")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") || !strings.Contains(body, "cxbridge_test_total 3") || !strings.HasSuffix(body, "# EOF\n") {
		t.Fatalf("%s\n%s", resp.Header.Get("Content-Type"), body)
	}
}

// /debug/pprof/ is served only when enabled.
func TestPprofOptIn(t *testing.T) {
	s := New(prometheus.NewRegistry(), 0)
	url := serve(t, s)
	if resp, _ := get(t, url+"/debug/pprof/"); resp.StatusCode != 404 {
		t.Fatalf("/debug/pprof/ without opting in: %d, want 404", resp.StatusCode)
	}
	s.EnablePprof()
	resp, body := get(t, url+"/debug/pprof/goroutine?debug=1")
	if resp.StatusCode != 200 || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("/debug/pprof/goroutine once enabled: %d %.200s", resp.StatusCode, body)
	}
}
