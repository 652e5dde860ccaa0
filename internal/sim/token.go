package sim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// tokenInfo is what the simulator keeps of an issued token.
type tokenInfo struct {
	issued, expires time.Time
	scope           string
	publish         bool // scope holds event:publish
}

// tokenRequest is a token request whatever its style.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Scope        string `json:"scope"`
	Username     string `json:"username"`
	Password     string `json:"password"`
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

const maxTokenBody = 64 << 10

// handleToken is POST /api/v2/authorization/token.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.tokenRequests.Add(1)
	fs := s.faults.Load()
	now := time.Now()
	if fs.inOutage(now) {
		tokenError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "simulated outage")
		return
	}
	if st := fs.f.TokenStatus; st != 0 {
		if loc := fs.location(st); loc != "" {
			w.Header().Set("Location", loc)
		}
		tokenError(w, st, tokenStatusError(st), "simulated token endpoint status")
		return
	}
	req, errCode, msg := readTokenRequest(w, r)
	if errCode != "" {
		tokenError(w, http.StatusBadRequest, errCode, msg)
		return
	}
	switch req.GrantType {
	case "":
		tokenError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	case "client_credentials", "password":
	default:
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials or password")
		return
	}
	id, secret := req.ClientID, req.ClientSecret
	if u, p, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: Basic credentials are form-encoded first.
		id, secret = formUnescape(u), formUnescape(p)
	}
	if id == "" || secret == "" || !equal(id, s.cfg.ClientID) || !equal(secret, s.clientSecret()) {
		w.Header().Set("WWW-Authenticate", `Basic realm="cxone-sim"`)
		tokenError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong client secret")
		return
	}
	if req.GrantType == "password" {
		if req.Username == "" || req.Password == "" {
			tokenError(w, http.StatusBadRequest, "invalid_request", "username and password (the access key id and secret) are required")
			return
		}
		if !equal(req.Username, s.cfg.AccessKeyID) || !equal(req.Password, s.cfg.AccessKeySecret) {
			tokenError(w, http.StatusBadRequest, "invalid_grant", "unknown access key or wrong access key secret")
			return
		}
	}
	scope := strings.Join(strings.Fields(req.Scope), " ")
	if scope == "" {
		scope = DefaultScope
	}
	tok := "sim_" + rand.Text() + rand.Text() // 260 random bits
	info := &tokenInfo{issued: now, expires: now.Add(s.cfg.TokenTTL), scope: scope}
	for _, sc := range strings.Fields(scope) {
		if sc == DefaultScope {
			info.publish = true
		}
	}
	s.tokens.Store(tok, info)
	s.tokensIssued.Add(1)
	if s.tokensSince.Add(1)%1024 == 0 {
		s.pruneTokens(now)
	}
	s.log.Debug("sim: token issued", "grant_type", req.GrantType, "scope", scope)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tok, TokenType: "Bearer",
		ExpiresIn: max(1, int64(s.cfg.TokenTTL/time.Second)), Scope: scope,
	})
}

// readTokenRequest reads a JSON or form token request. errCode is set when
// it is malformed.
func readTokenRequest(w http.ResponseWriter, r *http.Request) (req tokenRequest, errCode, msg string) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&req); err != nil {
			return req, "invalid_request", "body is not a JSON object of strings: " + err.Error()
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return req, "invalid_request", "body is not a form: " + err.Error()
		}
		f := r.PostForm
		req = tokenRequest{
			GrantType: f.Get("grant_type"), ClientID: f.Get("client_id"), ClientSecret: f.Get("client_secret"),
			Scope: f.Get("scope"), Username: f.Get("username"), Password: f.Get("password"),
		}
	default:
		return req, "invalid_request", "Content-Type must be application/json or application/x-www-form-urlencoded"
	}
	return req, "", ""
}

// tokenError answers an OAuth2 error.
func tokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, desc})
}

func tokenStatusError(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_client"
	case status == http.StatusBadRequest:
		return "invalid_grant"
	case status == http.StatusServiceUnavailable:
		return "temporarily_unavailable"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request"
	}
}

func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// pruneTokens forgets tokens past their expiry.
func (s *Server) pruneTokens(now time.Time) {
	s.tokens.Range(func(k, v any) bool {
		if now.After(v.(*tokenInfo).expires) {
			s.tokens.Delete(k)
		}
		return true
	})
}

// authenticate checks the bearer token of a publish. It answers 401 itself
// and returns nil when the token is missing, unknown or expired.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, fs *faultState, now time.Time) *tokenInfo {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cxone-sim"`)
		s.fail(w, http.StatusUnauthorized, errorBody{Error: "unauthorized", Message: "missing bearer token"})
		return nil
	}
	v, found := s.tokens.Load(tok)
	var problem string
	switch {
	case !found:
		problem = "unknown token"
	case now.After(v.(*tokenInfo).expires):
		problem = "token expired"
	case fs.f.TokenExpiry > 0 && now.Sub(v.(*tokenInfo).issued) >= fs.f.TokenExpiry.D():
		problem = "token expired (simulated token expiry)"
	}
	if problem != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cxone-sim", error="invalid_token", error_description="`+problem+`"`)
		s.fail(w, http.StatusUnauthorized, errorBody{Error: "invalid_token", Message: problem})
		return nil
	}
	return v.(*tokenInfo)
}
