package sim_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
)

func TestStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, base, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("base URL %q", base)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	e := &env{s: s, hc: &http.Client{Transport: tr}, url: base}
	wantStatus(t, e.do(t, http.MethodGet, "/healthz", nil, nil), 200)
	wantStatus(t, e.publish(t, e.token(t), "start", ""), 200)
	if st := s.Stats(); st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
	cancel()
	// The listener closes: wait for a refused connection.
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still listening after ctx ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartBadAddr(t *testing.T) {
	if _, _, err := sim.Start(context.Background(), "127.0.0.1:notaport", sim.Config{}); err == nil {
		t.Fatal("Start with a bad address succeeded")
	}
}

// TestServeShutdown: ending ctx ends a request waiting on simulated latency
// and Serve returns well before ShutdownTimeout.
func TestServeShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Config{Faults: sim.Faults{Latency: sim.Duration(time.Hour)}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	tok := fetchToken(t, hc, base)
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, base+publishPath, strings.NewReader(eventBody("sd", "")))
		req.Header = pubHeaders(tok, "sd")
		resp, err := hc.Do(req)
		if err != nil {
			answered <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	for s.Stats().Requests == 0 { // the publish is waiting in the handler
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(sim.ShutdownTimeout):
		t.Fatal("Serve did not return")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("shutdown took %v", el)
	}
	if got := <-answered; got != -1 && got != 503 {
		t.Fatalf("the waiting publish got %d, want 503 or a connection error", got)
	}
}
