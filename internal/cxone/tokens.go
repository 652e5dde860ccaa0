package cxone

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/cxbridge/cxbridge/internal/retry"
)

// TokensConfig configures a token cache.
type TokensConfig struct {
	// RefreshBefore is how long before expiry a token is refreshed.
	// Optional; default 5m. Clamped to half the token's lifetime.
	RefreshBefore time.Duration
	// FetchTimeout bounds one token request. Optional; default 15s.
	FetchTimeout time.Duration
	// RetryMin and RetryMax bound the wait between failed token requests:
	// retry.Backoff's schedule, RetryMin doubling (plus jitter up to
	// RetryMin) up to RetryMax. Optional; defaults 500ms and 30s.
	RetryMin, RetryMax time.Duration
	// OnRefresh is called after every token request with its result. Optional.
	OnRefresh func(tok *oauth2.Token, err error)
	// Logger is optional.
	Logger *slog.Logger
}

// Tokens caches one bearer token. Callers share it; at most one token
// request is in flight however many callers wait; a token is refreshed
// early (before expiry) in the background while callers keep using it;
// Invalidate drops exactly the token that got a 401.
type Tokens struct {
	cfg   TokensConfig
	fetch Fetcher

	mu       sync.Mutex
	tok      *oauth2.Token
	lifetime time.Duration
	inflight chan struct{} // closed when the running fetch ends; nil when none runs
	lastErr  error         // the last fetch's error, returned until retryAt
	retryAt  time.Time
	failures int
}

// NewTokens returns a token cache fetching with f.
func NewTokens(f Fetcher, cfg TokensConfig) *Tokens {
	if cfg.RefreshBefore <= 0 {
		cfg.RefreshBefore = 5 * time.Minute
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 15 * time.Second
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 500 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tokens{cfg: cfg, fetch: f}
}

// Token returns a valid access token, fetching one if needed. While token
// requests fail it returns the last *TokenError without asking again until
// a backoff has passed. It returns ctx's error if ctx ends while waiting.
func (t *Tokens) Token(ctx context.Context) (string, error) {
	for {
		t.mu.Lock()
		now := time.Now()
		if t.tok != nil && now.Before(t.tok.Expiry) {
			if now.After(t.refreshAt()) && t.inflight == nil && !now.Before(t.retryAt) {
				t.startFetchLocked(ctx) // early refresh; keep using the current token meanwhile
			}
			tok := t.tok.AccessToken
			t.mu.Unlock()
			return tok, nil
		}
		if t.inflight == nil {
			if now.Before(t.retryAt) {
				err := t.lastErr
				t.mu.Unlock()
				return "", err
			}
			t.startFetchLocked(ctx)
		}
		wait := t.inflight
		t.mu.Unlock()
		select {
		case <-wait:
			t.mu.Lock()
			ok := t.tok != nil && time.Now().Before(t.tok.Expiry)
			err := t.lastErr
			t.mu.Unlock()
			if !ok && err != nil {
				return "", err
			}
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// refreshAt is when the current token should be replaced. Caller holds mu.
func (t *Tokens) refreshAt() time.Time {
	margin := t.cfg.RefreshBefore
	if half := t.lifetime / 2; margin > half {
		margin = half
	}
	return t.tok.Expiry.Add(-margin)
}

// startFetchLocked starts the one token request. It is not tied to the
// caller's cancellation: other callers may be waiting for it.
func (t *Tokens) startFetchLocked(ctx context.Context) {
	done := make(chan struct{})
	t.inflight = done
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.FetchTimeout)
	go func() {
		defer close(done)
		defer cancel()
		start := time.Now()
		tok, err := t.fetch.Fetch(fctx)
		if err == nil && tok.Expiry.IsZero() {
			tok.Expiry = start.Add(time.Hour) // no expires_in: assume the usual hour
		}
		t.mu.Lock()
		t.inflight = nil
		if err != nil {
			t.failures++
			t.lastErr = err
			t.retryAt = time.Now().Add(t.backoff())
		} else {
			t.failures, t.lastErr, t.retryAt = 0, nil, time.Time{}
			t.tok, t.lifetime = tok, tok.Expiry.Sub(start)
		}
		t.mu.Unlock()
		if err != nil {
			t.cfg.Logger.Warn("token request failed", "error", err.Error(), "config_error", IsConfigError(err))
		} else {
			t.cfg.Logger.Debug("token refreshed", "expires_at", tok.Expiry.UTC().Format(time.RFC3339))
		}
		if t.cfg.OnRefresh != nil {
			t.cfg.OnRefresh(tok, err)
		}
	}()
}

// backoff is the wait after the failures-th failed request in a row:
// RetryMin doubling up to RetryMax (retry.Backoff, with its jitter).
func (t *Tokens) backoff() time.Duration {
	return retry.Policy{Base: t.cfg.RetryMin, Max: t.cfg.RetryMax}.Wait(t.failures)
}

// Invalidate drops the cached token if it is still token, so that the next
// Token call fetches a new one. A token already replaced is left alone: of
// many callers that got a 401 with the same token, only one refresh follows.
func (t *Tokens) Invalidate(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != nil && t.tok.AccessToken == token {
		t.tok = nil
	}
}

// Expiry returns the current token's expiry, zero when there is none.
func (t *Tokens) Expiry() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok == nil {
		return time.Time{}
	}
	return t.tok.Expiry
}

// Wait blocks until no token request is in flight (for graceful shutdown
// and tests). It returns ctx's error if ctx ends first.
func (t *Tokens) Wait(ctx context.Context) error {
	t.mu.Lock()
	ch := t.inflight
	t.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NextTry returns when a token request may be made again after a failure;
// the zero time when the last request succeeded.
func (t *Tokens) NextTry() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.retryAt
}

// IsConfigError reports whether err is a token request refused because the
// settings are wrong.
func IsConfigError(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.Config
}
