// Package sim is a CXone simulator: the token endpoint in the three request
// styles of the contract (json, form, password), the publish endpoint with
// strict validation of the body and headers, fault injection (latency,
// errors, outages and flapping outages, rate limits, token expiry,
// forbidden event types, poison correlation ids, scripted and forced
// answers, redirects) and a record of what it accepted, so that
// tests can check delivery, duplicates and per-key order.
//
// Routes (one http.Handler):
//
//	POST /api/v2/authorization/token   token endpoint
//	POST /api/v2/events/publish        publish endpoint
//	GET  /sim/stats                    Stats as JSON
//	GET  /sim/faults                   Faults as JSON
//	PUT  /sim/faults                   replace Faults (JSON)
//	POST /sim/reset                    Reset
//	POST /sim/revoke-tokens            RevokeTokens
//	GET  /sim/events/{correlationId}   Accepted as JSON, or 404
//	GET  /sim/accepted                 every accepted correlation id and its count, NDJSON
//	GET  /healthz                      liveness
//
// The publish checks run in this order: latency; outage (503); bearer token
// (401); script; forced status; scope (403); body size (413); Content-Type
// (415); body (400, naming the field); headers (400, naming the header);
// failing correlation id (500); forbidden event type (403); error rate
// (503); rate limit (429); accept. The outage check covers the flapping.
// The body (at most 1 MiB of it) is read before the latency wait so that a
// client that leaves ends the wait; a request whose context ends during the
// wait is answered 503 and not counted in Stats.ByStatus. A scripted or
// forced status below 300 does not override: the publish is processed
// normally. Faults are documented on the Faults type.
//
// Error answers are JSON: {"error": code, "field": body field or header,
// "header": header, "reason": event.Reason, "message": text}, members empty
// omitted. The token endpoint takes a JSON or form body; client credentials
// come from HTTP Basic (form-decoded, RFC 6749 §2.3.1; they win) or the body;
// its errors are OAuth2 {"error","error_description"}.
//
// A Server is safe for concurrent use. The publish path takes no lock held
// across I/O: counters are atomic and the record of accepted events is a
// sharded map.
package sim

import (
	"encoding/json"
	"hash/maphash"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	DefaultClientID        = "cxbridge-dev"
	DefaultClientSecret    = "cxbridge-dev-secret"
	DefaultAccessKeyID     = "cxbridge-dev-key"
	DefaultAccessKeySecret = "cxbridge-dev-key-secret"
	DefaultTokenTTL        = time.Hour
	// DefaultScope is granted when a token request asks for no scope.
	DefaultScope = "event:publish"
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	ClientID, ClientSecret       string        // defaults "cxbridge-dev", "cxbridge-dev-secret"
	AccessKeyID, AccessKeySecret string        // for the password style; defaults "cxbridge-dev-key", "cxbridge-dev-key-secret"
	TokenTTL                     time.Duration // expires_in of issued tokens; default 1h
	Faults                       Faults        // initial faults (OutageFor starts at New)
	Logger                       *slog.Logger  // nil = discard
}

// Stats counts what the simulator saw. Publish statuses are in ByStatus.
type Stats struct {
	Requests        int64         `json:"requests"`   // publish requests
	Accepted        int64         `json:"accepted"`   // publishes answered 200
	Distinct        int64         `json:"distinct"`   // distinct correlation ids accepted
	Duplicates      int64         `json:"duplicates"` // accepted again with a correlation id already accepted
	ByStatus        map[int]int64 `json:"by_status"`  // publish answers by status
	TokenRequests   int64         `json:"token_requests"`
	TokensIssued    int64         `json:"tokens_issued"`
	Keys            int64         `json:"keys"`             // distinct data.key values seen with a data.seq
	OrderViolations int64         `json:"order_violations"` // see Server.KeySequence
}

// Accepted is what the simulator keeps of an accepted correlation id.
// Headers and Data are those of the first acceptance; Count is how many
// times it was accepted.
type Accepted struct {
	EventType     string          `json:"event_type"`
	Source        string          `json:"source"`
	Timestamp     string          `json:"timestamp"`
	CorrelationID string          `json:"correlation_id"`
	TraceID       string          `json:"trace_id"`
	Count         int             `json:"count"`
	Headers       http.Header     `json:"headers"` // request headers, Authorization removed
	Data          json.RawMessage `json:"data"`
}

const numShards = 64

type acceptShard struct {
	mu sync.Mutex
	m  map[string]*Accepted
	_  [48]byte // keep shards on separate cache lines
}

type keyTrack struct {
	seqs []int64
	seen map[int64]struct{}
	max  int64
}

type keyShard struct {
	mu sync.Mutex
	m  map[string]*keyTrack
	_  [48]byte
}

// Server is the simulator. Create it with New.
type Server struct {
	cfg  Config
	log  *slog.Logger
	mux  *http.ServeMux
	seed maphash.Seed

	tokens      sync.Map // access token → *tokenInfo
	tokensSince atomic.Int64

	rotatedSecret atomic.Pointer[string] // RotateClientSecret's, else cfg.ClientSecret

	faults    atomic.Pointer[faultState]
	scriptMu  sync.Mutex
	script    []Response
	scriptLen atomic.Int64

	requests, accepted, distinct, duplicates atomic.Int64
	tokenRequests, tokensIssued              atomic.Int64
	keys, orderViolations                    atomic.Int64
	byStatus                                 [600]atomic.Int64

	acc  [numShards]acceptShard
	keyS [numShards]keyShard
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = DefaultClientSecret
	}
	if cfg.AccessKeyID == "" {
		cfg.AccessKeyID = DefaultAccessKeyID
	}
	if cfg.AccessKeySecret == "" {
		cfg.AccessKeySecret = DefaultAccessKeySecret
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, seed: maphash.MakeSeed()}
	for i := range s.acc {
		s.acc[i].m = map[string]*Accepted{}
		s.keyS[i].m = map[string]*keyTrack{}
	}
	s.setFaults(cfg.Faults, false)
	s.routes()
	return s
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/authorization/token", s.handleToken)
	mux.HandleFunc("POST /api/v2/events/publish", s.handlePublish)
	mux.HandleFunc("GET /sim/stats", s.handleStats)
	mux.HandleFunc("GET /sim/faults", s.handleGetFaults)
	mux.HandleFunc("PUT /sim/faults", s.handlePutFaults)
	mux.HandleFunc("POST /sim/reset", s.handleReset)
	mux.HandleFunc("POST /sim/revoke-tokens", s.handleRevoke)
	mux.HandleFunc("GET /sim/events/{correlationId}", s.handleEvent)
	mux.HandleFunc("GET /sim/accepted", s.handleAccepted)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	s.mux = mux
}

// Handler returns the simulator's HTTP handler (every route).
func (s *Server) Handler() http.Handler { return s.mux }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:        s.requests.Load(),
		Accepted:        s.accepted.Load(),
		Distinct:        s.distinct.Load(),
		Duplicates:      s.duplicates.Load(),
		ByStatus:        map[int]int64{},
		TokenRequests:   s.tokenRequests.Load(),
		TokensIssued:    s.tokensIssued.Load(),
		Keys:            s.keys.Load(),
		OrderViolations: s.orderViolations.Load(),
	}
	for code := range s.byStatus {
		if n := s.byStatus[code].Load(); n != 0 {
			st.ByStatus[code] = n
		}
	}
	return st
}

// Lookup returns what was accepted with correlationID.
func (s *Server) Lookup(correlationID string) (Accepted, bool) {
	sh := &s.acc[s.shard(correlationID)]
	sh.mu.Lock()
	a, ok := sh.m[correlationID]
	var out Accepted
	if ok {
		out = *a
	}
	sh.mu.Unlock()
	if !ok {
		return Accepted{}, false
	}
	out.Headers = out.Headers.Clone()
	out.Data = slices.Clone(out.Data)
	return out, true
}

// AcceptedCounts returns how many times each correlation id was accepted.
func (s *Server) AcceptedCounts() map[string]int {
	out := map[string]int{}
	for i := range s.acc {
		sh := &s.acc[i]
		sh.mu.Lock()
		for id, a := range sh.m {
			out[id] = a.Count
		}
		sh.mu.Unlock()
	}
	return out
}

// KeySequence returns the data.seq values accepted for data.key, in arrival
// order (duplicates included). An arrival is an order violation when its seq
// is lower than the highest seq accepted before for the key and was never
// accepted before for the key (a redelivery is not a violation).
func (s *Server) KeySequence(key string) []int64 {
	sh := &s.keyS[s.shard(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	kt, ok := sh.m[key]
	if !ok {
		return nil
	}
	return slices.Clone(kt.seqs)
}

// RotateClientSecret makes the token endpoint accept secret, and no
// longer the client secret it accepted before (a rotation in CXone).
// Tokens already issued stay valid.
func (s *Server) RotateClientSecret(secret string) {
	s.rotatedSecret.Store(&secret)
	s.log.Info("sim: client secret rotated")
}

// clientSecret is the client secret the token endpoint accepts.
func (s *Server) clientSecret() string {
	if p := s.rotatedSecret.Load(); p != nil {
		return *p
	}
	return s.cfg.ClientSecret
}

// RevokeTokens makes every token issued so far unknown: publishes with them
// are answered 401.
func (s *Server) RevokeTokens() {
	s.tokens.Clear()
	s.log.Info("sim: tokens revoked")
}

// Reset clears the counters, the accepted events, the key sequences and the
// script. Other faults and issued tokens stay.
func (s *Server) Reset() {
	s.scriptMu.Lock()
	s.script = nil
	s.scriptLen.Store(0)
	s.scriptMu.Unlock()
	for i := range s.acc {
		sh := &s.acc[i]
		sh.mu.Lock()
		sh.m = map[string]*Accepted{}
		sh.mu.Unlock()
		ks := &s.keyS[i]
		ks.mu.Lock()
		ks.m = map[string]*keyTrack{}
		ks.mu.Unlock()
	}
	for _, c := range []*atomic.Int64{&s.requests, &s.accepted, &s.distinct, &s.duplicates,
		&s.tokenRequests, &s.tokensIssued, &s.keys, &s.orderViolations} {
		c.Store(0)
	}
	for i := range s.byStatus {
		s.byStatus[i].Store(0)
	}
	s.log.Info("sim: reset")
}

func (s *Server) shard(key string) int {
	return int(maphash.String(s.seed, key) % numShards)
}

// writeJSON answers status with v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, "application/json", b)
}

// contentTypes are shared header values (the server only reads them).
var contentTypes = map[string][]string{
	"application/json":          {"application/json"},
	"text/plain; charset=utf-8": {"text/plain; charset=utf-8"},
}

func writeRaw(w http.ResponseWriter, status int, contentType string, body []byte) {
	if v, ok := contentTypes[contentType]; ok {
		w.Header()["Content-Type"] = v
	} else {
		w.Header().Set("Content-Type", contentType)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error   string `json:"error"`
	Field   string `json:"field,omitempty"`
	Header  string `json:"header,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}
