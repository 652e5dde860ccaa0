package cxone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// The token fetchers against the real simulator over real HTTP. The only
// thing between them is tokenRecorder, which notes what each token request
// carried and what the simulator answered, and changes nothing.

var allStyles = []cxone.TokenStyle{cxone.StyleJSON, cxone.StyleForm, cxone.StylePassword}

const tokenPath = "/api/v2/authorization/token"

// tokenCall is what one token request carried and got.
type tokenCall struct {
	authScheme  string // scheme of the Authorization header, "" when absent
	basicUser   string // HTTP Basic user name (form-decoded), when Basic
	contentType string
	form        url.Values // the body, when form-encoded
	rawBody     string
	status      int
	respBody    string
}

// tokenRecorder wraps the simulator's handler and records token requests.
type tokenRecorder struct {
	next http.Handler

	mu    sync.Mutex
	calls []tokenCall
}

func (rec *tokenRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != tokenPath {
		rec.next.ServeHTTP(w, r)
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(raw)) // the simulator reads it again
	c := tokenCall{contentType: r.Header.Get("Content-Type"), rawBody: string(raw)}
	if scheme, _, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok {
		c.authScheme = scheme
	}
	if u, _, ok := r.BasicAuth(); ok {
		c.basicUser, _ = url.QueryUnescape(u)
	}
	if strings.HasPrefix(c.contentType, "application/x-www-form-urlencoded") {
		c.form, _ = url.ParseQuery(string(raw))
	}
	tw := &teeWriter{ResponseWriter: w}
	rec.next.ServeHTTP(tw, r)
	c.status, c.respBody = tw.status, tw.buf.String()
	rec.mu.Lock()
	rec.calls = append(rec.calls, c)
	rec.mu.Unlock()
}

func (rec *tokenRecorder) last(t *testing.T) tokenCall {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.calls) == 0 {
		t.Fatal("no token request reached the simulator")
	}
	return rec.calls[len(rec.calls)-1]
}

// teeWriter keeps a copy of the status and body written through it.
type teeWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (w *teeWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *teeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.buf.Write(p)
	return w.ResponseWriter.Write(p)
}

// simEnv is a simulator behind a tokenRecorder on a real listener.
type simEnv struct {
	sim *sim.Server
	url string
	rec *tokenRecorder
	hc  *http.Client
}

func newSimEnv(t *testing.T, cfg sim.Config) *simEnv {
	t.Helper()
	s := sim.New(cfg)
	rec := &tokenRecorder{next: s.Handler()}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections) // runs before srv.Close
	return &simEnv{sim: s, url: srv.URL, rec: rec, hc: hc}
}

// creds are the simulator's default credentials for style.
func creds(style cxone.TokenStyle, baseURL string) cxone.Credentials {
	return cxone.Credentials{
		TokenURL: baseURL + tokenPath, Style: style,
		ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		AccessKeyID: sim.DefaultAccessKeyID, AccessKeySecret: sim.DefaultAccessKeySecret,
		Scope: "event:publish",
	}
}

func fetch(t *testing.T, c cxone.Credentials, hc *http.Client) (string, error) {
	t.Helper()
	f, err := cxone.NewFetcher(c, hc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := f.Fetch(ctx)
	if err != nil {
		if tok != nil {
			t.Errorf("Fetch returned a token and an error")
		}
		return "", err
	}
	if tok == nil || tok.AccessToken == "" {
		t.Fatalf("Fetch returned no token and no error: %+v", tok)
	}
	return tok.AccessToken, nil
}

func tokenError(t *testing.T, err error) *cxone.TokenError {
	t.Helper()
	var te *cxone.TokenError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want a *cxone.TokenError", err, err)
	}
	return te
}

// Each style gets a token the simulator accepts for a publish, and
// authenticates the client as the contract says: the tutorial's JSON body,
// or HTTP Basic (oauth2.AuthStyleInHeader) with a form body that holds no
// client secret.
func TestFetchStyles(t *testing.T) {
	t.Parallel()
	cases := []struct {
		style       cxone.TokenStyle
		contentType string
		authScheme  string // "" = no Authorization header
		grantType   string
	}{
		{cxone.StyleJSON, "application/json", "", "client_credentials"},
		{cxone.StyleForm, "application/x-www-form-urlencoded", "Basic", "client_credentials"},
		{cxone.StylePassword, "application/x-www-form-urlencoded", "Basic", "password"},
	}
	for _, tc := range cases {
		t.Run(string(tc.style), func(t *testing.T) {
			t.Parallel()
			e := newSimEnv(t, sim.Config{})
			tok, err := fetch(t, creds(tc.style, e.url), e.hc)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}

			call := e.rec.last(t)
			if call.status != http.StatusOK {
				t.Fatalf("token endpoint answered %d %s", call.status, call.respBody)
			}
			if !strings.HasPrefix(call.contentType, tc.contentType) {
				t.Errorf("Content-Type %q, want %s", call.contentType, tc.contentType)
			}
			if call.authScheme != tc.authScheme {
				t.Errorf("Authorization scheme %q, want %q", call.authScheme, tc.authScheme)
			}
			switch tc.authScheme {
			case "Basic":
				if call.basicUser != sim.DefaultClientID {
					t.Errorf("Basic user %q, want %q", call.basicUser, sim.DefaultClientID)
				}
				if call.form == nil {
					t.Fatalf("body %q is not a form", call.rawBody)
				}
				if call.form.Has("client_secret") || call.form.Has("client_id") {
					t.Errorf("client credentials in the form body as well as in Basic: %v", keys(call.form))
				}
				if g := call.form.Get("grant_type"); g != tc.grantType {
					t.Errorf("grant_type %q, want %q", g, tc.grantType)
				}
				if tc.grantType == "password" && (call.form.Get("username") != sim.DefaultAccessKeyID || call.form.Get("password") == "") {
					t.Errorf("password grant without the access key: %v", keys(call.form))
				}
			case "":
				if !strings.Contains(call.rawBody, `"grant_type":"client_credentials"`) ||
					!strings.Contains(call.rawBody, `"client_id":"`+sim.DefaultClientID+`"`) {
					t.Errorf("JSON token body lacks the tutorial's fields")
				}
			}

			// The token is good for a publish.
			ev := &event.Event{
				EventType: "custom.user.action", Source: "fetch-test", Timestamp: "2026-11-28T10:00:00.123Z",
				CorrelationID: "fetch-" + string(tc.style), TraceID: "trace-" + string(tc.style),
				Data: []byte(`{"style":"` + string(tc.style) + `"}`),
			}
			body, err := ev.Body()
			if err != nil {
				t.Fatal(err)
			}
			res := cxone.NewClient(e.hc, e.url, 5*time.Second).Attempt(context.Background(), tok, ev, body)
			if res.Class != cxone.Accepted || res.Status != http.StatusOK {
				t.Fatalf("publish with the %s token: %s %d %q %v", tc.style, res.Class, res.Status, res.Body, res.Err)
			}
			if _, ok := e.sim.Lookup(ev.CorrelationID); !ok {
				t.Fatal("the simulator did not record the publish")
			}
			if st := e.sim.Stats(); st.TokensIssued != 1 || st.Accepted != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func keys(v url.Values) []string {
	out := make([]string, 0, len(v))
	for k := range v {
		out = append(out, k)
	}
	return out
}

// Wrong credentials are a configuration error, whatever the style, and the
// error text holds neither the secrets sent nor the endpoint's answer.
func TestFetchConfigErrors(t *testing.T) {
	t.Parallel()
	const (
		badSecret    = "wrong-client-secret-7Qx2"
		badKeySecret = "wrong-access-key-secret-9Zp4"
	)
	cases := []struct {
		name       string
		style      cxone.TokenStyle
		mutate     func(*cxone.Credentials)
		wantStatus int
		wantCode   string
	}{
		{"json/wrong-client-secret", cxone.StyleJSON, func(c *cxone.Credentials) { c.ClientSecret = badSecret }, 401, "invalid_client"},
		{"form/wrong-client-secret", cxone.StyleForm, func(c *cxone.Credentials) { c.ClientSecret = badSecret }, 401, "invalid_client"},
		{"password/wrong-client-secret", cxone.StylePassword, func(c *cxone.Credentials) { c.ClientSecret = badSecret }, 401, "invalid_client"},
		{"json/unknown-client", cxone.StyleJSON, func(c *cxone.Credentials) { c.ClientID = "nobody" }, 401, "invalid_client"},
		{"password/wrong-access-key-secret", cxone.StylePassword, func(c *cxone.Credentials) { c.AccessKeySecret = badKeySecret }, 400, "invalid_grant"},
		{"password/unknown-access-key", cxone.StylePassword, func(c *cxone.Credentials) {
			c.AccessKeyID, c.AccessKeySecret = "unknown-key", badKeySecret
		}, 400, "invalid_grant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSimEnv(t, sim.Config{})
			c := creds(tc.style, e.url)
			tc.mutate(&c)
			_, err := fetch(t, c, e.hc)
			if err == nil {
				t.Fatal("Fetch succeeded with wrong credentials")
			}
			te := tokenError(t, err)
			if !te.Config || !cxone.IsConfigError(err) {
				t.Errorf("Config %v, IsConfigError %v, want a configuration error: %v", te.Config, cxone.IsConfigError(err), err)
			}
			if te.Status != tc.wantStatus || te.Code != tc.wantCode {
				t.Errorf("status %d code %q, want %d %q", te.Status, te.Code, tc.wantStatus, tc.wantCode)
			}
			call := e.rec.last(t)
			if call.status != tc.wantStatus || call.respBody == "" {
				t.Fatalf("the simulator answered %d %q", call.status, call.respBody)
			}
			msg := err.Error()
			for _, secret := range []string{c.ClientSecret, c.AccessKeySecret, sim.DefaultClientSecret, sim.DefaultAccessKeySecret} {
				if strings.Contains(msg, secret) {
					t.Errorf("error text %q holds a secret", msg)
				}
			}
			var answer struct {
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal([]byte(call.respBody), &answer); err != nil || answer.Description == "" {
				t.Fatalf("the simulator's answer %q has no error_description", call.respBody)
			}
			if strings.Contains(msg, call.respBody) || strings.Contains(msg, answer.Description) {
				t.Errorf("error text %q holds the token endpoint's answer %q", msg, call.respBody)
			}
		})
	}
}

// A token endpoint that is down, failing or unreachable is a transient
// error, not a configuration error, whatever the style.
func TestFetchTransientErrors(t *testing.T) {
	t.Parallel()
	for _, style := range allStyles {
		for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError} {
			t.Run(string(style)+"/status="+http.StatusText(status), func(t *testing.T) {
				t.Parallel()
				e := newSimEnv(t, sim.Config{Faults: sim.Faults{TokenStatus: status}})
				_, err := fetch(t, creds(style, e.url), e.hc)
				if err == nil {
					t.Fatalf("Fetch succeeded against a token endpoint answering %d", status)
				}
				te := tokenError(t, err)
				if te.Config || cxone.IsConfigError(err) {
					t.Errorf("a %d is a configuration error: %v", status, err)
				}
				if te.Status != status {
					t.Errorf("status %d, want %d", te.Status, status)
				}
				if e.sim.Stats().TokenRequests != 1 {
					t.Errorf("token requests %d, want 1", e.sim.Stats().TokenRequests)
				}
			})
		}
		t.Run(string(style)+"/connection-refused", func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(sim.New(sim.Config{}).Handler())
			base := srv.URL
			srv.Close() // nothing listens there now
			hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
			defer hc.CloseIdleConnections()
			_, err := fetch(t, creds(style, base), hc)
			if err == nil {
				t.Fatal("Fetch succeeded against a closed server")
			}
			te := tokenError(t, err)
			if te.Config || cxone.IsConfigError(err) {
				t.Errorf("connection refused is a configuration error: %v", err)
			}
			if te.Status != 0 {
				t.Errorf("status %d, want 0 (no answer)", te.Status)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("error %v does not wrap ECONNREFUSED", err)
			}
		})
	}
}

// expires_in is honoured by every style, and by the token cache built on it.
func TestFetchExpiresIn(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	for _, style := range allStyles {
		t.Run(string(style), func(t *testing.T) {
			t.Parallel()
			e := newSimEnv(t, sim.Config{TokenTTL: ttl})
			f, err := cxone.NewFetcher(creds(style, e.url), e.hc)
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			tok, err := f.Fetch(context.Background())
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			if tok.Expiry.Before(before.Add(ttl)) || tok.Expiry.After(after.Add(ttl)) {
				t.Errorf("Expiry now%+v, want now+%v", tok.Expiry.Sub(before), ttl)
			}
			// Only Expiry counts: clientcredentials (the form style) leaves
			// oauth2.Token.ExpiresIn zero, and nothing here reads it.
			if !strings.EqualFold(tok.Type(), "Bearer") {
				t.Errorf("token type %q", tok.Type())
			}

			// The cache keeps the token for its lifetime, not the default hour.
			cache := cxone.NewTokens(f, cxone.TokensConfig{})
			before = time.Now()
			if _, err := cache.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			after = time.Now()
			if exp := cache.Expiry(); exp.Before(before.Add(ttl)) || exp.After(after.Add(ttl)) {
				t.Errorf("cached Expiry now%+v, want now+%v", exp.Sub(before), ttl)
			}
			if err := cache.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The Basic credentials the form styles send decode to the configured
// client, even when id and secret need escaping (RFC 6749 §2.3.1).
func TestFetchBasicAuthEscaping(t *testing.T) {
	t.Parallel()
	const id, secret = "client:with space", "s3cr3t/+%&:"
	for _, style := range []cxone.TokenStyle{cxone.StyleForm, cxone.StylePassword} {
		t.Run(string(style), func(t *testing.T) {
			t.Parallel()
			e := newSimEnv(t, sim.Config{ClientID: id, ClientSecret: secret})
			c := creds(style, e.url)
			c.ClientID, c.ClientSecret = id, secret
			if _, err := fetch(t, c, e.hc); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			call := e.rec.last(t)
			if call.authScheme != "Basic" || call.basicUser != id {
				t.Fatalf("Authorization %q user %q, want Basic %q", call.authScheme, call.basicUser, id)
			}
			if call.form.Has("client_secret") || strings.Contains(call.rawBody, "s3cr3t") {
				t.Errorf("the client secret is in the body %q", call.rawBody)
			}
		})
	}
}
