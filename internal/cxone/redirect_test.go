package cxone_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/sim"
)

var redirectStatuses = []int{
	http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
	http.StatusTemporaryRedirect, http.StatusPermanentRedirect,
}

// landing is where the redirects point: a page that answers 200 to every
// request (a real simulator's token endpoint, for token requests) and
// counts them. A followed redirect would show there.
type landing struct {
	url  string
	hits atomic.Int64
}

func newLanding(t *testing.T) *landing {
	t.Helper()
	l := &landing{}
	h := sim.New(sim.Config{}).Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.hits.Add(1)
		if r.URL.Path == tokenPath {
			h.ServeHTTP(w, r) // a valid token, were it asked
			return
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>welcome</html>"))
	}))
	t.Cleanup(srv.Close)
	l.url = srv.URL
	return l
}

// redirector answers every request with status and Location loc.
func redirector(t *testing.T, status int, loc string) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Location", loc)
		w.WriteHeader(status)
		_, _ = w.Write([]byte("moved"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func redirectEvent() (*event.Event, []byte) {
	ev := &event.Event{EventType: "custom.user.action", Source: "redirect-test", Timestamp: "2026-11-28T10:00:00.123Z",
		CorrelationID: "redirect-1", TraceID: "trace-redirect-1", Data: []byte(`{}`)}
	body, err := ev.Body()
	if err != nil {
		panic(err)
	}
	return ev, body
}

// A publish answered 3xx is a redirect, never accepted, and its Location is
// never requested: not with the worker's HTTP client, and not with a client
// that would follow redirects (NewClient does not let it).
func TestPublishRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	clients := map[string]func() *http.Client{
		"NewHTTPClient":  func() *http.Client { return cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 4}) },
		"default client": func() *http.Client { return &http.Client{Transport: &http.Transport{}} },
	}
	for _, status := range redirectStatuses {
		for name, newHC := range clients {
			t.Run(http.StatusText(status)+"/"+name, func(t *testing.T) {
				t.Parallel()
				land := newLanding(t)
				target := land.url + "/welcome?from=publish"
				base, hits := redirector(t, status, target)
				hc := newHC()
				t.Cleanup(hc.CloseIdleConnections)
				ev, body := redirectEvent()
				res := cxone.NewClient(hc, base, 5*time.Second).Attempt(context.Background(), "tok", ev, body)
				if res.Class != cxone.Redirect || res.Status != status {
					t.Fatalf("class %s status %d (err %v), want redirect %d", res.Class, res.Status, res.Err, status)
				}
				var re *cxone.RedirectError
				if !errors.As(res.Err, &re) || re.Status != status || re.Location != target {
					t.Fatalf("err %v, want a *RedirectError with status %d and Location %s", res.Err, status, target)
				}
				if !strings.Contains(res.Err.Error(), target) {
					t.Fatalf("error text %q does not name the Location", res.Err)
				}
				if n := hits.Load(); n != 1 {
					t.Fatalf("%d requests to the publish endpoint, want 1", n)
				}
				if n := land.hits.Load(); n != 0 {
					t.Fatalf("the redirect target was requested %d times", n)
				}
			})
		}
	}
}

// The Location in the error is resolved against the request's URL, has any
// password masked and is bounded; a 3xx without one says so.
func TestRedirectLocationInError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, loc, want string // want: "" = the redirector's own URL + the path
		wantPrefix      bool
	}{
		{"relative", "/api/v3/events/publish", "", false},
		{"credentials masked", "https://user:hunter2@cxone.example/x", "https://user:xxxxx@cxone.example/x", false},
		{"none", "", "no Location", false},
		{"long", "https://cxone.example/" + strings.Repeat("a", 2000), "https://cxone.example/aaa", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, _ := redirector(t, http.StatusFound, tc.loc)
			hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 2})
			t.Cleanup(hc.CloseIdleConnections)
			ev, body := redirectEvent()
			res := cxone.NewClient(hc, base, 5*time.Second).Attempt(context.Background(), "tok", ev, body)
			if res.Class != cxone.Redirect {
				t.Fatalf("class %s", res.Class)
			}
			msg := res.Err.Error()
			want := tc.want
			if want == "" {
				want = base + tc.loc
			}
			if !strings.Contains(msg, want) {
				t.Fatalf("error %q does not hold %q", msg, want)
			}
			if strings.Contains(msg, "hunter2") {
				t.Fatalf("error %q holds the Location's password", msg)
			}
			if tc.wantPrefix && len(msg) > 700 {
				t.Fatalf("error of %d bytes: the Location is not bounded", len(msg))
			}
		})
	}
}

// A token endpoint answering 3xx gives no token: a configuration error
// (the token URL is not the endpoint) naming the Location, in every style,
// without requesting the Location — though a token waits there.
func TestFetchRedirectIsConfigError(t *testing.T) {
	t.Parallel()
	for _, style := range allStyles {
		for _, status := range redirectStatuses {
			t.Run(string(style)+"/"+http.StatusText(status), func(t *testing.T) {
				t.Parallel()
				land := newLanding(t)
				target := land.url + tokenPath
				base, hits := redirector(t, status, target)
				hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: 2})
				t.Cleanup(hc.CloseIdleConnections)
				_, err := fetch(t, creds(style, base), hc)
				if err == nil {
					t.Fatal("Fetch got a token through a redirect")
				}
				te := tokenError(t, err)
				if !te.Config || !cxone.IsConfigError(err) || te.Status != status {
					t.Fatalf("config %v status %d: %v; want a configuration error with status %d", te.Config, te.Status, err, status)
				}
				if !cxone.IsRedirect(err) || !strings.Contains(err.Error(), target) {
					t.Fatalf("error %q does not name the redirect to %s", err, target)
				}
				if strings.Contains(err.Error(), sim.DefaultClientSecret) || strings.Contains(err.Error(), sim.DefaultAccessKeySecret) {
					t.Fatalf("error %q holds a secret", err)
				}
				if hits.Load() != 1 || land.hits.Load() != 0 {
					t.Fatalf("token endpoint asked %d times, redirect target %d times; want 1 and 0", hits.Load(), land.hits.Load())
				}
			})
		}
	}
}

// The token cache keeps a redirect as a configuration error (not ready,
// retried with backoff), whatever client it was given.
func TestTokensRedirectConfigError(t *testing.T) {
	t.Parallel()
	land := newLanding(t)
	base, hits := redirector(t, http.StatusMovedPermanently, land.url+tokenPath)
	hc := &http.Client{Transport: &http.Transport{}} // would follow, if allowed
	t.Cleanup(hc.CloseIdleConnections)
	f, err := cxone.NewFetcher(creds(cxone.StyleJSON, base), hc)
	if err != nil {
		t.Fatal(err)
	}
	tokens := cxone.NewTokens(f, cxone.TokensConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := tokens.Token(ctx); !cxone.IsConfigError(err) || !cxone.IsRedirect(err) {
		t.Fatalf("Token: %v, want a configuration error naming the redirect", err)
	}
	if tokens.NextTry().IsZero() {
		t.Fatal("no backoff after the failed request")
	}
	if _, err := tokens.Token(ctx); !cxone.IsConfigError(err) {
		t.Fatalf("second Token: %v", err)
	}
	if hits.Load() != 1 || land.hits.Load() != 0 {
		t.Fatalf("token endpoint asked %d times (want 1: the backoff holds), target %d", hits.Load(), land.hits.Load())
	}
}
