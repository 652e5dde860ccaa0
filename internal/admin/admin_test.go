package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		cancel()
		t.Fatalf("Serve returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("Serve did not listen within 10s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of its context ending")
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

// /healthz is 200 while the loop beats and 503 once it stalls. Runs on
// synctest's fake clock: staleness is a matter of time.
func TestHealthz(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(prometheus.NewRegistry(), 50*time.Millisecond)
		healthz := func() (int, string) {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			return rec.Code, rec.Body.String()
		}
		if code, body := healthz(); code != 200 {
			t.Fatalf("status %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond) // at the bound: not stalled yet
		if code, body := healthz(); code != 200 {
			t.Fatalf("at the bound: status %d %s", code, body)
		}
		time.Sleep(time.Millisecond) // no Beat past the bound: the loop looks stalled
		if code, body := healthz(); code != 503 || !strings.Contains(body, "stalled") {
			t.Fatalf("past the bound: status %d %s", code, body)
		}
		s.Beat()
		if code, body := healthz(); code != 200 {
			t.Fatalf("after a beat: status %d %s", code, body)
		}
	})
	// And over HTTP, as the probes see it.
	url := serve(t, New(prometheus.NewRegistry(), time.Hour))
	if resp, _ := get(t, url+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("over HTTP: status %d", resp.StatusCode)
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

// /healthz fails with the liveness check's detail while it fails, and is
// ok again once it passes; readiness is not consulted.
func TestHealthzLiveness(t *testing.T) {
	var wedged atomic.Bool
	s := New(prometheus.NewRegistry(), 0, Component{Name: "consumer", Check: func() (bool, string) { return false, "not a member" }})
	s.SetLiveness(func() (bool, string) {
		if wedged.Load() {
			return false, "consumer wedged: partition(s) 0"
		}
		return true, "ok"
	})
	url := serve(t, s)
	if resp, body := get(t, url+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("not ready but not wedged: status %d %s", resp.StatusCode, body)
	}
	wedged.Store(true)
	if resp, body := get(t, url+"/healthz"); resp.StatusCode != 503 || !strings.Contains(body, `"status":"wedged"`) || !strings.Contains(body, "partition(s) 0") {
		t.Fatalf("wedged: status %d %s", resp.StatusCode, body)
	}
	wedged.Store(false)
	if resp, body := get(t, url+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("moving again: status %d %s", resp.StatusCode, body)
	}
}
