package cxone_test

import (
	"context"
	"sync"
	"testing"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// secretSource is a CredentialsSource whose "file" holds file; a reread
// copies it into the secret in use.
type secretSource struct {
	mu            sync.Mutex
	base          cxone.Credentials
	inUse, file   string
	calls, reread int
}

func (s *secretSource) get(reread bool) cxone.Credentials {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if reread {
		s.reread++
		s.inUse = s.file
	}
	c := s.base
	c.ClientSecret = s.inUse
	return c
}

// For every token style: a request the token endpoint refuses makes the
// next one read the secret again first, and that one succeeds with the
// rotated secret; a secret changed without a refusal (SIGHUP's reload)
// is used by the next request as it is; no reread without a refusal.
func TestRotatingFetcherRereadsAfterRefusal(t *testing.T) {
	for _, style := range []cxone.TokenStyle{cxone.StyleJSON, cxone.StyleForm, cxone.StylePassword} {
		t.Run(string(style), func(t *testing.T) {
			env := newSimEnv(t, sim.Config{})
			src := &secretSource{base: creds(style, env.url), inUse: sim.DefaultClientSecret, file: sim.DefaultClientSecret}
			f, err := cxone.NewRotatingFetcher(src.get, env.hc)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := f.Fetch(ctx); err != nil {
				t.Fatal(err)
			}

			env.sim.RotateClientSecret("rotated-1")
			src.mu.Lock()
			src.file = "rotated-1" // the file has the new secret; the worker does not know yet
			src.mu.Unlock()
			_, err = f.Fetch(ctx)
			if !cxone.IsConfigError(err) {
				t.Fatalf("the old secret: want a configuration error, got %v", err)
			}
			if src.reread != 0 {
				t.Fatalf("%d rereads before any refusal", src.reread)
			}
			if _, err := f.Fetch(ctx); err != nil {
				t.Fatalf("after the refusal the secret file is read again: %v", err)
			}
			if src.reread != 1 {
				t.Fatalf("%d rereads, want 1", src.reread)
			}
			if _, err := f.Fetch(ctx); err != nil || src.reread != 1 {
				t.Fatalf("a success is followed by no reread: %v, %d", err, src.reread)
			}

			// A reload (SIGHUP) changes the secret in use: the next request has it.
			env.sim.RotateClientSecret("rotated-2")
			src.mu.Lock()
			src.inUse = "rotated-2"
			src.mu.Unlock()
			if _, err := f.Fetch(ctx); err != nil || src.reread != 1 {
				t.Fatalf("the reloaded secret: %v, %d rereads", err, src.reread)
			}
		})
	}
}

// A transient failure (the token endpoint in an outage) is no refusal: the
// secret is not read again for it.
func TestRotatingFetcherNoRereadOnOutage(t *testing.T) {
	env := newSimEnv(t, sim.Config{Faults: sim.Faults{TokenStatus: 503}})
	src := &secretSource{base: creds(cxone.StyleJSON, env.url), inUse: sim.DefaultClientSecret, file: sim.DefaultClientSecret}
	f, err := cxone.NewRotatingFetcher(src.get, env.hc)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := f.Fetch(context.Background()); err == nil || cxone.IsConfigError(err) {
			t.Fatalf("want a transient error, got %v", err)
		}
	}
	if src.reread != 0 {
		t.Fatalf("%d rereads after 503s", src.reread)
	}
}
