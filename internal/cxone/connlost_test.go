package cxone_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/cxone"
)

// connDropper is a CXone whose answer to each publish is chosen by the test:
// answer it, or read the whole request (so that it has reached CXone) and
// then drop the connection — reset (RST) or closed (FIN) — without an
// answer. It notes each request's client address, to tell a reused
// connection from a fresh one.
type connDropper struct {
	srv *httptest.Server

	mu      sync.Mutex
	next    []string // what to do with the next requests: "ok", "503", "reset", "close", "slow"
	remotes []string
}

func newConnDropper(t *testing.T) *connDropper {
	t.Helper()
	d := &connDropper{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // the request has reached CXone
		d.mu.Lock()
		what := "ok"
		if len(d.next) > 0 {
			what, d.next = d.next[0], d.next[1:]
		}
		d.remotes = append(d.remotes, r.RemoteAddr)
		d.mu.Unlock()
		switch what {
		case "ok":
			w.WriteHeader(http.StatusOK)
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "answer, then reset":
			// A kept-alive connection reset while idle, after its answer:
			// the next publish meets it before or after the pool has
			// noticed.
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			_ = buf.Flush()
			_ = conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		case "reset", "close":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			if what == "reset" {
				_ = conn.(*net.TCPConn).SetLinger(0) // close sends RST
			}
			conn.Close()
		}
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *connDropper) then(what ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next = append(d.next, what...)
}

func (d *connDropper) remote(i int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remotes[i]
}

// A connection that breaks under a publish — reset or closed by the other
// side after the request was sent, on a reused or a fresh connection — is
// a network error marked ConnLost: the request may have reached CXone (here
// it did). Every other failure is not: a refused connection, a 5xx, an
// attempt's timeout.
func TestAttemptConnectionLost(t *testing.T) {
	t.Parallel()
	ev, body := redirectEvent()
	for _, tc := range []struct {
		name   string
		warm   bool // a first publish is answered on the connection: the second reuses it
		what   string
		class  cxone.Class
		lost   bool
		status int
	}{
		{"reset on a reused connection", true, "reset", cxone.NetworkError, true, 0},
		{"reset on a fresh connection", false, "reset", cxone.NetworkError, true, 0},
		{"closed on a reused connection", true, "close", cxone.NetworkError, true, 0},
		{"closed on a fresh connection", false, "close", cxone.NetworkError, true, 0},
		{"503 on a reused connection", true, "503", cxone.ServerError, false, 503},
		{"attempt timeout", true, "slow", cxone.Timeout, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newConnDropper(t)
			hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 4})
			t.Cleanup(hc.CloseIdleConnections)
			c := cxone.NewClient(hc, d.srv.URL, 500*time.Millisecond)
			if tc.warm {
				if res := c.Attempt(context.Background(), "tok", ev, body); res.Class != cxone.Accepted || res.ConnLost {
					t.Fatalf("first publish: %+v", res)
				}
			}
			d.then(tc.what)
			res := c.Attempt(context.Background(), "tok", ev, body)
			if res.Class != tc.class || res.ConnLost != tc.lost || res.Status != tc.status {
				t.Fatalf("got class %s, ConnLost %v, status %d (err %v); want %s, %v, %d",
					res.Class, res.ConnLost, res.Status, res.Err, tc.class, tc.lost, tc.status)
			}
			if tc.warm && d.remote(0) != d.remote(1) {
				t.Fatalf("the second publish came on another connection (%s, then %s): not a reused one", d.remote(0), d.remote(1))
			}
			if tc.lost && res.Err == nil {
				t.Fatal("a lost connection without its error")
			}
		})
	}

	// net/http itself sends a publish again when its kept-alive connection
	// turns out to be broken before any of it was written (the body can be
	// had again): that never reaches delivery as a failure.
	t.Run("idle kept-alive connection reset", func(t *testing.T) {
		t.Parallel()
		d := newConnDropper(t)
		hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 4})
		t.Cleanup(hc.CloseIdleConnections)
		c := cxone.NewClient(hc, d.srv.URL, time.Second)
		d.then("answer, then reset")
		for i := range 2 {
			if res := c.Attempt(context.Background(), "tok", ev, body); res.Class != cxone.Accepted {
				t.Fatalf("publish %d: class %s (err %v), want accepted", i+1, res.Class, res.Err)
			}
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there any more
		hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 4})
		res := cxone.NewClient(hc, "http://"+addr, time.Second).Attempt(context.Background(), "tok", ev, body)
		if res.Class != cxone.NetworkError || res.ConnLost {
			t.Fatalf("got class %s, ConnLost %v (err %v); want network_error, not lost", res.Class, res.ConnLost, res.Err)
		}
	})
}

// An attempt with a NewConnection context is sent on a connection of its
// own, not on the kept-alive one, which is left in the pool for the next.
func TestAttemptOnNewConnection(t *testing.T) {
	t.Parallel()
	ev, body := redirectEvent()
	d := newConnDropper(t)
	hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 4})
	t.Cleanup(hc.CloseIdleConnections)
	c := cxone.NewClient(hc, d.srv.URL, time.Second)
	ctx := context.Background()
	for i, ctx := range []context.Context{ctx, cxone.NewConnection(ctx), ctx, cxone.NewConnection(ctx)} {
		if res := c.Attempt(ctx, "tok", ev, body); res.Class != cxone.Accepted {
			t.Fatalf("publish %d: %+v", i+1, res)
		}
	}
	pooled, own1, again, own2 := d.remote(0), d.remote(1), d.remote(2), d.remote(3)
	if own1 == pooled || own2 == pooled || own1 == own2 {
		t.Errorf("publishes on a new connection came from %s and %s, the kept-alive one is %s: want each its own", own1, own2, pooled)
	}
	if again != pooled {
		t.Errorf("the publish after came from %s, not the kept-alive %s: the pool was disturbed", again, pooled)
	}
}

type connKey struct{}

// Over HTTP/2 (TLS, every publish a stream of one kept-alive connection),
// a reset of that connection under a publish is ConnLost too, and the
// publish sent with NewConnection goes on a connection of its own.
func TestAttemptConnectionLostHTTP2(t *testing.T) {
	t.Parallel()
	ev, body := redirectEvent()
	var mu sync.Mutex
	var remotes []string
	reset := false
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		remotes = append(remotes, r.RemoteAddr)
		doReset := reset
		reset = false
		mu.Unlock()
		if r.ProtoMajor != 2 {
			t.Errorf("publish over %s, want HTTP/2", r.Proto)
		}
		if doReset {
			c := r.Context().Value(connKey{}).(*tls.Conn).NetConn().(*net.TCPConn)
			_ = c.SetLinger(0)
			c.Close()
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 4, TLS: &tls.Config{RootCAs: pool}})
	t.Cleanup(hc.CloseIdleConnections)
	c := cxone.NewClient(hc, srv.URL, 2*time.Second)
	ctx := context.Background()

	if res := c.Attempt(ctx, "tok", ev, body); res.Class != cxone.Accepted {
		t.Fatalf("first publish: %+v", res)
	}
	mu.Lock()
	reset = true
	mu.Unlock()
	res := c.Attempt(ctx, "tok", ev, body)
	if res.Class != cxone.NetworkError || !res.ConnLost {
		t.Fatalf("publish on a reset HTTP/2 connection: class %s, ConnLost %v (err %v); want network_error, lost", res.Class, res.ConnLost, res.Err)
	}
	if res := c.Attempt(cxone.NewConnection(ctx), "tok", ev, body); res.Class != cxone.Accepted {
		t.Fatalf("publish on a new connection: %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if remotes[1] != remotes[0] {
		t.Errorf("the reset publish came on %s, not the kept-alive %s", remotes[1], remotes[0])
	}
	if remotes[2] == remotes[0] {
		t.Errorf("the publish on a new connection came on the kept-alive %s", remotes[2])
	}
}
