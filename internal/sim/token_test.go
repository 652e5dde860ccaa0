package sim_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/cxbridge/cxbridge/internal/sim"
)

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }
func formHeader() http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
}

func basic(h http.Header, id, secret string) http.Header {
	r := &http.Request{Header: h}
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return h
}

func TestTokenStyles(t *testing.T) {
	e := newEnv(t, sim.Config{TokenTTL: 90 * time.Second})
	cases := []struct {
		name  string
		h     http.Header
		body  string
		scope string
	}{
		{"json", jsonHeader(),
			`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret","scope":"event:publish"}`, "event:publish"},
		{"json default scope", jsonHeader(),
			`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret"}`, "event:publish"},
		{"json basic", basic(jsonHeader(), "cxbridge-dev", "cxbridge-dev-secret"),
			`{"grant_type":"client_credentials","scope":"event:publish other"}`, "event:publish other"},
		{"form body credentials", formHeader(),
			"grant_type=client_credentials&scope=event%3Apublish&client_id=cxbridge-dev&client_secret=cxbridge-dev-secret", "event:publish"},
		{"form basic", basic(formHeader(), "cxbridge-dev", "cxbridge-dev-secret"),
			"grant_type=client_credentials", "event:publish"},
		{"password basic", basic(formHeader(), "cxbridge-dev", "cxbridge-dev-secret"),
			"grant_type=password&username=cxbridge-dev-key&password=cxbridge-dev-key-secret", "event:publish"},
		{"password body credentials", formHeader(),
			"grant_type=password&username=cxbridge-dev-key&password=cxbridge-dev-key-secret&client_id=cxbridge-dev&client_secret=cxbridge-dev-secret&scope=event:publish", "event:publish"},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, http.MethodPost, tokenPath, c.h, strings.NewReader(c.body))
			wantStatus(t, r, http.StatusOK)
			m := r.json(t)
			tok, _ := m["access_token"].(string)
			if len(tok) < 32 || seen[tok] {
				t.Fatalf("access_token %q: too short or reused", tok)
			}
			seen[tok] = true
			if m["token_type"] != "Bearer" || m["expires_in"] != float64(90) || m["scope"] != c.scope {
				t.Fatalf("token response %s", r.body)
			}
			if got := r.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q", got)
			}
			wantStatus(t, e.publish(t, tok, "tok-"+strings.ReplaceAll(c.name, " ", "-"), ""), http.StatusOK)
		})
	}
	if st := e.s.Stats(); st.TokenRequests != int64(len(cases)) || st.TokensIssued != int64(len(cases)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestTokenErrors(t *testing.T) {
	e := newEnv(t, sim.Config{})
	cases := []struct {
		name   string
		h      http.Header
		body   string
		status int
		code   string
	}{
		{"json wrong secret", jsonHeader(), `{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"nope"}`, 401, "invalid_client"},
		{"json unknown client", jsonHeader(), `{"grant_type":"client_credentials","client_id":"who","client_secret":"cxbridge-dev-secret"}`, 401, "invalid_client"},
		{"json no credentials", jsonHeader(), `{"grant_type":"client_credentials"}`, 401, "invalid_client"},
		{"json malformed", jsonHeader(), `{"grant_type":`, 400, "invalid_request"},
		{"json not strings", jsonHeader(), `{"grant_type":1}`, 400, "invalid_request"},
		{"json no grant", jsonHeader(), `{"client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret"}`, 400, "invalid_request"},
		{"json unsupported grant", jsonHeader(), `{"grant_type":"authorization_code","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret"}`, 400, "unsupported_grant_type"},
		{"form wrong basic", basic(formHeader(), "cxbridge-dev", "wrong"), "grant_type=client_credentials", 401, "invalid_client"},
		{"form wrong body secret", formHeader(), "grant_type=client_credentials&client_id=cxbridge-dev&client_secret=x", 401, "invalid_client"},
		{"form malformed", formHeader(), "grant_type=%zz", 400, "invalid_request"},
		{"form unsupported grant", formHeader(), "grant_type=implicit", 400, "unsupported_grant_type"},
		{"password wrong key secret", basic(formHeader(), "cxbridge-dev", "cxbridge-dev-secret"),
			"grant_type=password&username=cxbridge-dev-key&password=wrong", 400, "invalid_grant"},
		{"password unknown key", basic(formHeader(), "cxbridge-dev", "cxbridge-dev-secret"),
			"grant_type=password&username=other&password=cxbridge-dev-key-secret", 400, "invalid_grant"},
		{"password missing key", basic(formHeader(), "cxbridge-dev", "cxbridge-dev-secret"), "grant_type=password", 400, "invalid_request"},
		{"password wrong client", basic(formHeader(), "cxbridge-dev", "bad"),
			"grant_type=password&username=cxbridge-dev-key&password=cxbridge-dev-key-secret", 401, "invalid_client"},
		{"other content type", http.Header{"Content-Type": {"text/plain"}}, "grant_type=client_credentials", 400, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, http.MethodPost, tokenPath, c.h, strings.NewReader(c.body))
			wantStatus(t, r, c.status)
			if got := r.str(t, "error"); got != c.code {
				t.Fatalf("error %q, want %q (%s)", got, c.code, r.body)
			}
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if r := e.do(t, http.MethodGet, tokenPath, nil, nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET token: %d", r.status)
	}
	if st := e.s.Stats(); st.TokensIssued != 0 || st.TokenRequests != int64(len(cases)) {
		t.Fatalf("stats %+v", st)
	}
}

// TestTokenOAuth2Clients checks interoperability with golang.org/x/oauth2,
// which form-encodes Basic credentials (a secret with reserved characters).
func TestTokenOAuth2Clients(t *testing.T) {
	const secret = "s3cr+t/with:odd&chars=%"
	e := newEnv(t, sim.Config{ClientID: "my client", ClientSecret: secret, AccessKeyID: "AK1", AccessKeySecret: "ak+secret"})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.hc)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cc := &clientcredentials.Config{ClientID: "my client", ClientSecret: secret, TokenURL: e.url + tokenPath,
			Scopes: []string{"event:publish"}, AuthStyle: style}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("client credentials, style %d: %v", style, err)
		}
		if tok.TokenType != "Bearer" || time.Until(tok.Expiry) < 59*time.Minute {
			t.Fatalf("token %+v", tok)
		}
		oc := &oauth2.Config{ClientID: "my client", ClientSecret: secret,
			Endpoint: oauth2.Endpoint{TokenURL: e.url + tokenPath, AuthStyle: style}}
		ptok, err := oc.PasswordCredentialsToken(ctx, "AK1", "ak+secret")
		if err != nil {
			t.Fatalf("password, style %d: %v", style, err)
		}
		wantStatus(t, e.publish(t, ptok.AccessToken, "pw-"+string(rune('a'+style)), ""), http.StatusOK)
		bad := &oauth2.Config{ClientID: "my client", ClientSecret: secret,
			Endpoint: oauth2.Endpoint{TokenURL: e.url + tokenPath, AuthStyle: style}}
		_, err = bad.PasswordCredentialsToken(ctx, "AK1", "wrong")
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != 400 {
			t.Fatalf("wrong access key: %v", err)
		}
	}
}

func TestTokenScope(t *testing.T) {
	e := newEnv(t, sim.Config{})
	r := e.do(t, http.MethodPost, tokenPath, jsonHeader(),
		strings.NewReader(`{"grant_type":"client_credentials","client_id":"cxbridge-dev","client_secret":"cxbridge-dev-secret","scope":"event:read"}`))
	wantStatus(t, r, 200)
	if got := r.str(t, "scope"); got != "event:read" {
		t.Fatalf("scope %q", got)
	}
	p := e.publish(t, r.str(t, "access_token"), "scoped", "")
	wantStatus(t, p, http.StatusForbidden)
	if p.str(t, "error") != "insufficient_scope" || !strings.Contains(p.header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("403: %s %v", p.body, p.header)
	}
}

func TestTokenTTLExpiry(t *testing.T) {
	e := newEnv(t, sim.Config{TokenTTL: time.Nanosecond}) // expired as soon as issued
	r := e.do(t, http.MethodPost, tokenPath, formHeader(),
		strings.NewReader("grant_type=client_credentials&client_id=cxbridge-dev&client_secret=cxbridge-dev-secret"))
	wantStatus(t, r, 200)
	if r.json(t)["expires_in"] != float64(1) {
		t.Fatalf("expires_in: %s", r.body)
	}
	p := e.publish(t, r.str(t, "access_token"), "ttl", "")
	wantStatus(t, p, http.StatusUnauthorized)
	if p.str(t, "message") != "token expired" || !strings.Contains(p.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("401: %s %v", p.body, p.header)
	}
}

func TestRevokeTokens(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tok := e.token(t)
	wantStatus(t, e.publish(t, tok, "r1", ""), 200)
	e.s.RevokeTokens()
	wantStatus(t, e.publish(t, tok, "r2", ""), http.StatusUnauthorized)
	tok = e.token(t)
	wantStatus(t, e.publish(t, tok, "r3", ""), 200)
	wantStatus(t, e.do(t, http.MethodPost, "/sim/revoke-tokens", nil, nil), http.StatusNoContent)
	p := e.publish(t, tok, "r4", "")
	wantStatus(t, p, http.StatusUnauthorized)
	if p.str(t, "message") != "unknown token" {
		t.Fatalf("401 body %s", p.body)
	}
}
