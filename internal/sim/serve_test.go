package sim_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/certs"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
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
	waitClosed(t, strings.TrimPrefix(base, "http://"))
}

// waitClosed waits until addr refuses connections: the listener closed.
func waitClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
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
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Requests == 0 { // the publish is waiting in the handler
		if time.Now().After(deadline) {
			t.Fatal("the publish did not reach the handler within 10s")
		}
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
	select {
	case got := <-answered:
		if got != -1 && got != 503 {
			t.Fatalf("the waiting publish got %d, want 503 or a connection error", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting publish got no answer within 10s of the shutdown")
	}
}

// Over HTTPS: a client trusting the CA gets a token and publishes (over
// HTTP/2 when it asks for it); a client trusting only the system's roots
// fails its handshake with an unknown-authority error, which the simulator
// logs; plain HTTP on the port gets no answer; ServeTLS returns once ctx
// ends.
func TestServeTLS(t *testing.T) {
	b, err := certs.New(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.ServeTLS(ctx, ln, b.ServerConfig()) }()
	base := sim.URL(ln.Addr(), true)
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("base URL %q", base)
	}

	tr := &http.Transport{TLSClientConfig: b.ClientConfig(), ForceAttemptHTTP2: true}
	e := &env{s: s, hc: &http.Client{Transport: tr}, url: base}
	wantStatus(t, e.do(t, http.MethodGet, "/healthz", nil, nil), 200)
	wantStatus(t, e.publish(t, e.token(t), "tls", ""), 200)
	if st := s.Stats(); st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
	resp, err := e.hc.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || resp.TLS == nil {
		t.Fatalf("proto %s, TLS %v: want HTTP/2 over TLS", resp.Proto, resp.TLS != nil)
	}
	tr.CloseIdleConnections()

	plain := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}} // the system's roots only
	_, err = (&http.Client{Transport: plain}).Get(base + "/healthz")
	plain.CloseIdleConnections()
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("without the CA: %v, want an unknown-authority error", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "TLS handshake error") {
		if time.Now().After(deadline) {
			t.Fatalf("the refused handshake was not logged:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Plain HTTP on the TLS port: no simulator answer.
	httpTr := &http.Transport{}
	if resp, err := (&http.Client{Transport: httpTr}).Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was served on the TLS port")
		}
	}
	httpTr.CloseIdleConnections()

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeTLS: %v", err)
		}
	case <-time.After(sim.ShutdownTimeout + time.Second):
		t.Fatal("ServeTLS did not return")
	}
}

// StartTLS serves over HTTPS in the background and gives an https:// URL.
func TestStartTLS(t *testing.T) {
	b, err := certs.New(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, base, err := sim.StartTLS(ctx, "127.0.0.1:0", sim.Config{}, b.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("base URL %q", base)
	}
	tr := &http.Transport{TLSClientConfig: b.ClientConfig()}
	e := &env{s: s, hc: &http.Client{Transport: tr}, url: base}
	wantStatus(t, e.publish(t, e.token(t), "start-tls", ""), 200)
	tr.CloseIdleConnections()
	cancel()
	waitClosed(t, strings.TrimPrefix(base, "https://"))
}

func TestTLSNeedsACertificate(t *testing.T) {
	if _, _, err := sim.StartTLS(context.Background(), "127.0.0.1:0", sim.Config{}, nil); err == nil {
		t.Fatal("StartTLS without a TLS configuration succeeded")
	}
	if _, _, err := sim.StartTLS(context.Background(), "127.0.0.1:0", sim.Config{}, &tls.Config{}); err == nil {
		t.Fatal("StartTLS without a certificate succeeded")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.New(sim.Config{}).ServeTLS(context.Background(), ln, &tls.Config{}); err == nil {
		t.Fatal("ServeTLS without a certificate succeeded")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("ServeTLS left the listener open")
	}
}
