package cxone

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// countingFetcher hands out tok-1, tok-2, … with the given lifetime, after
// waiting on gate (when set) so that callers pile up.
type countingFetcher struct {
	n        atomic.Int64
	lifetime time.Duration
	gate     chan struct{}
	err      error
}

func (f *countingFetcher) Fetch(ctx context.Context) (*oauth2.Token, error) {
	n := f.n.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	return &oauth2.Token{AccessToken: fmt.Sprintf("tok-%d", n), Expiry: time.Now().Add(f.lifetime)}, nil
}

// However many callers wait, one token request is made.
func TestTokensSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &countingFetcher{lifetime: time.Hour, gate: make(chan struct{})}
		tokens := NewTokens(f, TokensConfig{})
		var wg sync.WaitGroup
		got := make([]string, 100)
		for i := range got {
			wg.Go(func() {
				tok, err := tokens.Token(context.Background())
				if err != nil {
					t.Error(err)
				}
				got[i] = tok
			})
		}
		// Let the one request finish only once every caller waits for it.
		synctest.Wait()
		if n := f.n.Load(); n != 1 {
			t.Fatalf("%d token requests with every caller waiting, want 1", n)
		}
		close(f.gate)
		wg.Wait()
		for _, tok := range got {
			if tok != "tok-1" {
				t.Fatalf("got %q, want tok-1", tok)
			}
		}
		if n := f.n.Load(); n != 1 {
			t.Fatalf("%d token requests, want 1", n)
		}
	})
}

// A token is refreshed early, in the background, while callers keep the old
// one. Runs on synctest's fake clock: the sleeps take no real time.
func TestTokensEarlyRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &countingFetcher{lifetime: time.Hour}
		tokens := NewTokens(f, TokensConfig{RefreshBefore: 5 * time.Minute})
		ctx := context.Background()
		if tok, _ := tokens.Token(ctx); tok != "tok-1" {
			t.Fatalf("first = %q", tok)
		}
		time.Sleep(54 * time.Minute) // before the refresh point
		if tok, _ := tokens.Token(ctx); tok != "tok-1" || f.n.Load() != 1 {
			t.Fatalf("a fresh token must be reused: %q after %d requests", tok, f.n.Load())
		}
		time.Sleep(2 * time.Minute) // 4 minutes before expiry: refresh in the background
		if tok, _ := tokens.Token(ctx); tok != "tok-1" {
			t.Fatalf("during the early refresh the valid token is still served, got %q", tok)
		}
		synctest.Wait()
		if tok, _ := tokens.Token(ctx); tok != "tok-2" {
			t.Fatalf("after the early refresh got %q, want tok-2", tok)
		}
		if n := f.n.Load(); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
	})
}

// For a short-lived token the margin is clamped to half its lifetime.
func TestTokensEarlyRefreshClamped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &countingFetcher{lifetime: 2 * time.Second}
		tokens := NewTokens(f, TokensConfig{RefreshBefore: 5 * time.Minute})
		ctx := context.Background()
		tokens.Token(ctx)
		time.Sleep(900 * time.Millisecond)
		tokens.Token(ctx)
		synctest.Wait()
		if n := f.n.Load(); n != 1 {
			t.Fatalf("refreshed before half the lifetime: %d requests", n)
		}
		time.Sleep(200 * time.Millisecond)
		tokens.Token(ctx)
		synctest.Wait()
		if n := f.n.Load(); n != 2 {
			t.Fatalf("not refreshed after half the lifetime: %d requests", n)
		}
	})
}

// Invalidate drops exactly the token that got the 401: an older one is ignored.
func TestTokensInvalidateOnlyThatToken(t *testing.T) {
	f := &countingFetcher{lifetime: time.Hour}
	tokens := NewTokens(f, TokensConfig{})
	ctx := context.Background()
	t1, _ := tokens.Token(ctx)
	tokens.Invalidate(t1)
	t2, _ := tokens.Token(ctx)
	if t2 != "tok-2" {
		t.Fatalf("after invalidating %s got %s", t1, t2)
	}
	tokens.Invalidate(t1) // a late 401 for the old token
	if t3, _ := tokens.Token(ctx); t3 != t2 {
		t.Fatalf("a stale invalidation replaced the current token: %s", t3)
	}
	if n := f.n.Load(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// A failing token endpoint is not hammered: callers get the last error until
// the backoff has passed; a configuration error is recognised as such.
func TestTokensErrorBackoff(t *testing.T) {
	f := &countingFetcher{lifetime: time.Hour, err: &TokenError{Status: 401, Code: "invalid_client", Config: true}}
	tokens := NewTokens(f, TokensConfig{RetryMin: time.Hour})
	ctx := context.Background()
	for range 20 {
		_, err := tokens.Token(ctx)
		if !IsConfigError(err) {
			t.Fatalf("err = %v, want a configuration error", err)
		}
	}
	if n := f.n.Load(); n != 1 {
		t.Fatalf("%d token requests during the backoff, want 1", n)
	}
	if !tokens.NextTry().After(time.Now()) {
		t.Fatal("NextTry should be in the future")
	}
}

// A waiting caller whose context ends returns at once; the request goes on for the others.
func TestTokensCallerCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &countingFetcher{lifetime: time.Hour, gate: make(chan struct{})}
		tokens := NewTokens(f, TokensConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := tokens.Token(ctx); errc <- err }()
		synctest.Wait() // the caller waits on the request, the request on the gate
		if n := f.n.Load(); n != 1 {
			t.Fatalf("%d token requests, want 1", n)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		close(f.gate)
		if tok, err := tokens.Token(context.Background()); err != nil || tok != "tok-1" {
			t.Fatalf("%q %v", tok, err)
		}
	})
}

// TokenError text never carries more than status and OAuth2 code.
func TestTokenErrorText(t *testing.T) {
	t.Parallel()
	e := statusTokenError(401, "invalid_client")
	if !e.Config || e.Error() != "token request failed (configuration error, status 401, invalid_client)" {
		t.Fatalf("%q config=%v", e.Error(), e.Config)
	}
	if statusTokenError(503, "").Config {
		t.Fatal("503 is transient")
	}
}

// After failed token requests the next one waits retry.Backoff's schedule:
// RetryMin doubling (plus jitter up to RetryMin) up to RetryMax; a success
// starts it over.
func TestTokensBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &countingFetcher{lifetime: time.Hour, err: errors.New("503")}
		tokens := NewTokens(f, TokensConfig{RetryMin: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond})
		ctx := context.Background()
		for i, low := range []time.Duration{100, 200, 400, 500, 500} {
			low *= time.Millisecond
			start := time.Now()
			if _, err := tokens.Token(ctx); err == nil {
				t.Fatal("a token from a failing endpoint")
			}
			wait := tokens.NextTry().Sub(start)
			if high := min(low+100*time.Millisecond, 500*time.Millisecond); wait < low || wait > high {
				t.Errorf("failure %d: next try after %v, want %v to %v", i+1, wait, low, high)
			}
			time.Sleep(wait) // the fake clock: the backoff passes
		}
		if n := f.n.Load(); n != 5 {
			t.Errorf("%d token requests, want 5 (one per backoff)", n)
		}
		f.err = nil
		if _, err := tokens.Token(ctx); err != nil || !tokens.NextTry().IsZero() {
			t.Errorf("after a success: %v, next try %v, want no error and no backoff", err, tokens.NextTry())
		}
	})
}
