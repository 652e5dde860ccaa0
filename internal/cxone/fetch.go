package cxone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TokenStyle is how the token endpoint is asked for a token.
type TokenStyle string

// The token request styles of the contract.
const (
	StyleJSON     TokenStyle = "json"     // the tutorial: a JSON body with client id, secret and scope
	StyleForm     TokenStyle = "form"     // RFC 6749 client credentials, form body, HTTP Basic client auth
	StylePassword TokenStyle = "password" // CXone access keys: password grant, HTTP Basic client auth
)

// Credentials are what the token endpoint needs. Secrets stay in memory only.
type Credentials struct {
	TokenURL        string
	Style           TokenStyle
	ClientID        string
	ClientSecret    string
	AccessKeyID     string // password style
	AccessKeySecret string // password style
	Scope           string
}

// Fetcher asks the token endpoint for a new token, once, every call.
type Fetcher interface {
	Fetch(ctx context.Context) (*oauth2.Token, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context) (*oauth2.Token, error)

// Fetch calls f.
func (f FetcherFunc) Fetch(ctx context.Context) (*oauth2.Token, error) { return f(ctx) }

// NewFetcher returns the Fetcher of creds.Style using hc for its requests.
// It never follows a redirect, whatever hc's CheckRedirect says: a 3xx from
// the token endpoint is a configuration error (see TokenError).
func NewFetcher(creds Credentials, hc *http.Client) (Fetcher, error) {
	hc = withoutRedirects(hc)
	var scopes []string
	if creds.Scope != "" {
		scopes = strings.Fields(creds.Scope)
	}
	withClient := func(ctx context.Context) context.Context {
		return context.WithValue(ctx, oauth2.HTTPClient, hc)
	}
	switch creds.Style {
	case StyleJSON:
		return &jsonFetcher{creds: creds, hc: hc}, nil
	case StyleForm:
		cc := &clientcredentials.Config{
			ClientID: creds.ClientID, ClientSecret: creds.ClientSecret,
			TokenURL: creds.TokenURL, Scopes: scopes,
			AuthStyle: oauth2.AuthStyleInHeader,
		}
		return FetcherFunc(func(ctx context.Context) (*oauth2.Token, error) {
			tok, err := cc.Token(withClient(ctx))
			return tok, classifyTokenErr(err)
		}), nil
	case StylePassword:
		oc := &oauth2.Config{
			ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, Scopes: scopes,
			Endpoint: oauth2.Endpoint{TokenURL: creds.TokenURL, AuthStyle: oauth2.AuthStyleInHeader},
		}
		return FetcherFunc(func(ctx context.Context) (*oauth2.Token, error) {
			tok, err := oc.PasswordCredentialsToken(withClient(ctx), creds.AccessKeyID, creds.AccessKeySecret)
			return tok, classifyTokenErr(err)
		}), nil
	default:
		return nil, fmt.Errorf("unknown token style %q", creds.Style)
	}
}

// jsonFetcher is the tutorial's token request: clientcredentials only sends
// form bodies, so this one is ours.
type jsonFetcher struct {
	creds Credentials
	hc    *http.Client
}

func (f *jsonFetcher) Fetch(ctx context.Context) (*oauth2.Token, error) {
	body, err := json.Marshal(map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     f.creds.ClientID,
		"client_secret": f.creds.ClientSecret,
		"scope":         f.creds.Scope,
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.creds.TokenURL, bytes.NewReader(body))
	if err != nil {
		return nil, &TokenError{Config: true, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, &TokenError{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, &TokenError{Status: resp.StatusCode, Err: err}
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, redirectTokenError(resp)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return nil, statusTokenError(resp.StatusCode, e.Error)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(raw, &tr); err != nil || tr.AccessToken == "" {
		return nil, &TokenError{Status: resp.StatusCode, Err: errors.New("token response has no access_token")}
	}
	tok := &oauth2.Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType}
	if tr.ExpiresIn > 0 {
		tok.Expiry = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
		tok.ExpiresIn = tr.ExpiresIn
	}
	return tok, nil
}

// TokenError is a failed token request. Config is true for answers that
// mean the settings are wrong (400, 401, 403 from the token endpoint, and a
// 3xx: the token URL is not the endpoint, and the redirect is not followed,
// its *RedirectError is Err): they do not heal by themselves. Otherwise the
// failure is transient (5xx, network, timeout). The error text never holds a
// secret or a token.
type TokenError struct {
	Status int    // HTTP status, 0 for a network error
	Code   string // the OAuth2 error code, when given
	Config bool
	Err    error
}

func (e *TokenError) Error() string {
	kind := "transient"
	if e.Config {
		kind = "configuration"
	}
	msg := "token request failed (" + kind + " error"
	if e.Status != 0 {
		msg += fmt.Sprintf(", status %d", e.Status)
	}
	if e.Code != "" {
		msg += ", " + e.Code
	}
	msg += ")"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *TokenError) Unwrap() error { return e.Err }

func statusTokenError(status int, code string) *TokenError {
	return &TokenError{
		Status: status,
		Code:   code,
		Config: status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden,
	}
}

// redirectTokenError is the configuration error of a 3xx from the token
// endpoint, naming its Location so that the log says where to point
// --cxone-token-url (after checking that the new address is CXone's).
func redirectTokenError(resp *http.Response) *TokenError {
	return &TokenError{Status: resp.StatusCode, Config: true, Err: redirectError(resp)}
}

// classifyTokenErr turns the oauth2 package's errors into *TokenError
// without the response body (which may echo what was sent).
func classifyTokenErr(err error) error {
	if err == nil {
		return nil
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		if st := re.Response.StatusCode; st >= 300 && st < 400 {
			return redirectTokenError(re.Response)
		}
		return statusTokenError(re.Response.StatusCode, re.ErrorCode)
	}
	return &TokenError{Err: err}
}
