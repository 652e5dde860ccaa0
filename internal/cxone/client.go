// Package cxone talks to the CXone API: token requests in the three styles
// of the contract with a shared, early-refreshed token cache, and single
// publish attempts whose answers are classified for the retry policy.
//
// It makes one HTTP attempt per call and never waits or retries: retries,
// backoff, the 429 gate and the circuit breaker live in package delivery.
package cxone

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/cxbridge/cxbridge/internal/event"
)

// PublishPath is the publish endpoint, relative to the base URL.
const PublishPath = "/api/v2/events/publish"

// MaxErrorBody is how much of an error response body is kept.
const MaxErrorBody = 1024

// TransportConfig sizes the HTTP transport.
type TransportConfig struct {
	// MaxConns bounds connections to the CXone host. Optional; default 512.
	MaxConns int
	// TLS is optional (a CA file or client certificate for CXone).
	TLS *tls.Config
	// DialTimeout, TLSTimeout and ResponseHeaderTimeout are optional;
	// defaults 5s, 10s and 15s.
	DialTimeout, TLSTimeout, ResponseHeaderTimeout time.Duration
}

// NewHTTPClient returns a client sized for hundreds of concurrent requests
// to one host: a keep-alive pool as large as the concurrency, bounded dial,
// TLS and response-header timeouts. Requests carry their own deadline. It
// never follows a redirect: a 3xx is returned as the answer.
func NewHTTPClient(cfg TransportConfig) *http.Client {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 512
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.TLSTimeout <= 0 {
		cfg.TLSTimeout = 10 * time.Second
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 15 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg.TLS,
		TLSHandshakeTimeout:   cfg.TLSTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		MaxIdleConns:          cfg.MaxConns,
		MaxIdleConnsPerHost:   cfg.MaxConns,
		MaxConnsPerHost:       cfg.MaxConns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr, CheckRedirect: noRedirects}
}

// Client publishes single events to CXone.
type Client struct {
	http    *http.Client
	single  *http.Client // a connection of its own for each request: see NewConnection
	url     string
	timeout time.Duration
}

// NewClient returns a client for baseURL. timeout bounds each attempt. It
// never follows a redirect, whatever hc's CheckRedirect says.
func NewClient(hc *http.Client, baseURL string, timeout time.Duration) *Client {
	hc = withoutRedirects(hc)
	return &Client{http: hc, single: singleUse(hc), url: strings.TrimRight(baseURL, "/") + PublishPath, timeout: timeout}
}

type newConnKey struct{}

// NewConnection returns ctx marked so that Client.Attempt sends its request
// on a connection of its own, made for it and closed after it, not on one
// kept alive from earlier requests. A publish whose connection broke under
// it is sent again this way: what broke one kept-alive connection (a load
// balancer recycling its connections, a NAT forgetting them) has often
// broken the others too, and the pool does not know it yet.
func NewConnection(ctx context.Context) context.Context {
	return context.WithValue(ctx, newConnKey{}, true)
}

// singleUse returns a copy of hc whose transport makes a connection for
// each request and closes it after: hc's *http.Transport cloned (same
// dialer, TLS, proxy and timeouts) with keep-alives off. It is hc itself
// when hc's transport is another kind of RoundTripper.
func singleUse(hc *http.Client) *http.Client {
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	tr, ok := rt.(*http.Transport)
	if !ok {
		return hc
	}
	t := tr.Clone()
	t.DisableKeepAlives = true
	c := *hc
	c.Transport = t
	return &c
}

// Result is the answer to one publish attempt.
type Result struct {
	Class      Class
	Status     int           // 0 when there was no answer
	RetryAfter time.Duration // from a Retry-After header, when HasRetryAfter
	// HasRetryAfter reports whether the answer carried a valid Retry-After.
	HasRetryAfter bool
	Body          string // error answers: the body, at most MaxErrorBody bytes
	// Err is the transport error when there was no answer, or a
	// *RedirectError naming the Location of a 3xx.
	Err error
	// ConnLost reports a NetworkError where the connection broke under
	// the request: it had a connection (reused or new) and the other side
	// reset or closed it (or a write to it failed) before an answer came.
	// The request may have reached CXone. Not for a connection that could
	// not be made (refused, TLS), nor a timeout.
	ConnLost bool
	Latency  time.Duration
}

// Attempt makes one publish request with token and body for ev, on a
// connection of its own when ctx comes from NewConnection.
func (c *Client) Attempt(ctx context.Context, token string, ev *event.Event, body []byte) Result {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	var gotConn atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
	})
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Result{Class: NetworkError, Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Correlation-ID", ev.CorrelationID)
	req.Header.Set("X-Trace-ID", ev.TraceID)
	req.Header.Set("X-Source-System", ev.Source)
	otel.GetTextMapPropagator().Inject(actx, propagation.HeaderCarrier(req.Header)) // traceparent, when tracing is on
	hc := c.http
	if fresh, _ := ctx.Value(newConnKey{}).(bool); fresh {
		hc = c.single
	}
	resp, err := hc.Do(req)
	if err != nil {
		res := Result{Class: Classify(0, err, ctx), Err: err, Latency: time.Since(start)}
		res.ConnLost = res.Class == NetworkError && gotConn.Load() && connBroken(err)
		return res
	}
	res := Result{Status: resp.StatusCode, Class: Classify(resp.StatusCode, nil, ctx)}
	if res.Class == Accepted {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	} else {
		res.Body = readBounded(resp.Body, MaxErrorBody)
		res.RetryAfter, res.HasRetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if res.Class == Redirect {
			res.Err = redirectError(resp)
		}
	}
	resp.Body.Close()
	res.Latency = time.Since(start)
	return res
}

// connBroken reports whether err is a connection breaking under a request:
// reset by the other side, closed by it (EOF before a whole answer, or
// net/http's "server closed idle connection" when the close raced the
// request on a kept-alive connection), a write to a closed one.
func connBroken(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "server closed idle connection") // net/http's errServerClosedIdle, unexported
}

// readBounded reads at most n bytes of r as valid UTF-8, marking a cut.
func readBounded(r io.Reader, n int) string {
	b, _ := io.ReadAll(io.LimitReader(r, int64(n)+1))
	cut := len(b) > n
	if cut {
		b = b[:n]
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if cut {
		s += "…"
	}
	return s
}
