package cxone

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"golang.org/x/oauth2"
)

// CredentialsSource returns the credentials of the next token request. With
// reread set it first reads its secrets again from where they came from
// (their files): the token endpoint refused the ones it gave last.
type CredentialsSource func(reread bool) Credentials

// NewRotatingFetcher returns a Fetcher that asks with the credentials src
// returns at every request, so a secret replaced meanwhile (a file read
// again on SIGHUP) is used from the next request on. After the token
// endpoint refused the credentials (400, 401 or 403: a secret rotated at
// CXone), the next request first has src read them again: a rotation
// whose new secret is in the file by then heals without a restart.
func NewRotatingFetcher(src CredentialsSource, hc *http.Client) (Fetcher, error) {
	f := &rotatingFetcher{src: src, hc: hc}
	if _, err := f.fetcher(false); err != nil { // a bad style: found at start
		return nil, err
	}
	return f, nil
}

type rotatingFetcher struct {
	src CredentialsSource
	hc  *http.Client

	mu      sync.Mutex
	creds   Credentials
	cur     Fetcher // of creds
	refused bool    // the last request's credentials were refused
}

// fetcher returns the Fetcher of the current credentials.
func (f *rotatingFetcher) fetcher(reread bool) (Fetcher, error) {
	creds := f.src(reread)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil || creds != f.creds {
		cur, err := NewFetcher(creds, f.hc)
		if err != nil {
			return nil, err
		}
		f.cur, f.creds = cur, creds
	}
	return f.cur, nil
}

func (f *rotatingFetcher) Fetch(ctx context.Context) (*oauth2.Token, error) {
	f.mu.Lock()
	reread := f.refused
	f.mu.Unlock()
	cur, err := f.fetcher(reread)
	if err != nil {
		return nil, &TokenError{Config: true, Err: err}
	}
	tok, err := cur.Fetch(ctx)
	f.mu.Lock()
	f.refused = refused(err)
	f.mu.Unlock()
	return tok, err
}

// refused reports whether err is the token endpoint refusing the
// credentials (not a redirect: that is the token URL's fault).
func refused(err error) bool {
	var te *TokenError
	if !errors.As(err, &te) {
		return false
	}
	switch te.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}
