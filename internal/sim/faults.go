package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Duration is a time.Duration that is a Go duration string in JSON ("20ms").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON encodes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON decodes a duration string ("1.5s", "20ms"; "" is 0).
// Numbers are refused: their unit would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"20ms\", got %s", b)
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Response is one scripted answer. A Status below 300 (or 0) does not
// override: the publish is then processed normally (validated, recorded).
type Response struct {
	Status     int    `json:"status"`
	RetryAfter string `json:"retry_after,omitempty"` // Retry-After header, if any
	Body       string `json:"body,omitempty"`        // default: {"error":"<status text>"}
}

// Faults are the injected faults. The zero value injects none.
type Faults struct {
	Latency         Duration   `json:"latency,omitempty"`           // added to every publish
	LatencyJitter   Duration   `json:"latency_jitter,omitempty"`    // plus uniform 0..jitter
	ErrorRate       float64    `json:"error_rate,omitempty"`        // share of publishes answered 503
	OutageFor       Duration   `json:"outage_for,omitempty"`        // 503 for publishes and token requests for this long from when set
	RateLimit       float64    `json:"rate_limit,omitempty"`        // accepted publishes/s; over it 429
	RetryAfter      string     `json:"retry_after,omitempty"`       // Retry-After of rate-limit (and forced) 429s; default "1"
	TokenExpiry     Duration   `json:"token_expiry,omitempty"`      // tokens older than this get 401
	ForbidEventType string     `json:"forbid_event_type,omitempty"` // 403 for this eventType
	Script          []Response `json:"script,omitempty"`            // answers for the next publishes, in order
	ForceStatus     int        `json:"force_status,omitempty"`      // every publish gets this status (≥ 300)
	TokenStatus     int        `json:"token_status,omitempty"`      // the token endpoint answers this status
	// Location is the Location header of every 3xx these faults answer
	// (forced, scripted or token status): where a redirect points.
	Location string `json:"location,omitempty"`
	// FlapDown and FlapUp make a flapping outage, from when set: publishes
	// and token requests get 503 for FlapDown, then are served normally for
	// FlapUp, over and over; for FlapFor in all (0: while these faults
	// stand). Both or neither are set.
	FlapDown Duration `json:"flap_down,omitempty"`
	FlapUp   Duration `json:"flap_up,omitempty"`
	FlapFor  Duration `json:"flap_for,omitempty"`
	// FailCorrelationIDs are answered 500 every time they are published
	// (once the body and headers passed their checks), whatever else
	// happens: poison events on an otherwise healthy CXone.
	FailCorrelationIDs []string `json:"fail_correlation_ids,omitempty"`
}

// Validate reports every unusable setting (PUT /sim/faults refuses them;
// SetFaults does not check).
func (f Faults) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		d    Duration
	}{{"latency", f.Latency}, {"latency_jitter", f.LatencyJitter}, {"outage_for", f.OutageFor}, {"token_expiry", f.TokenExpiry},
		{"flap_down", f.FlapDown}, {"flap_up", f.FlapUp}, {"flap_for", f.FlapFor}} {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %s", d.name, d.d))
		}
	}
	if !(f.ErrorRate >= 0 && f.ErrorRate <= 1) {
		errs = append(errs, fmt.Errorf("error_rate must be between 0 and 1, got %v", f.ErrorRate))
	}
	if !(f.RateLimit >= 0) || f.RateLimit > 1e9 {
		errs = append(errs, fmt.Errorf("rate_limit must be between 0 (off) and 1e9, got %v", f.RateLimit))
	}
	if f.RetryAfter != "" && !ValidRetryAfter(f.RetryAfter) {
		errs = append(errs, fmt.Errorf("retry_after must be seconds or an HTTP date, got %q", f.RetryAfter))
	}
	for _, st := range []struct {
		name string
		v    int
	}{{"force_status", f.ForceStatus}, {"token_status", f.TokenStatus}} {
		if st.v != 0 && (st.v < 100 || st.v > 599) {
			errs = append(errs, fmt.Errorf("%s must be an HTTP status (100-599) or 0, got %d", st.name, st.v))
		}
	}
	if (f.FlapDown > 0) != (f.FlapUp > 0) {
		errs = append(errs, fmt.Errorf("flap_down and flap_up go together, got %s and %s", f.FlapDown, f.FlapUp))
	}
	if f.FlapFor > 0 && f.FlapDown <= 0 {
		errs = append(errs, errors.New("flap_for needs flap_down and flap_up"))
	}
	if f.Location != "" {
		if _, err := url.Parse(f.Location); err != nil {
			errs = append(errs, fmt.Errorf("location must be a URL: %v", err))
		}
	}
	for i, r := range f.Script {
		if r.Status != 0 && (r.Status < 100 || r.Status > 599) {
			errs = append(errs, fmt.Errorf("script[%d].status must be an HTTP status (100-599) or 0, got %d", i, r.Status))
		}
	}
	return errors.Join(errs...)
}

// ValidRetryAfter reports whether v is a Retry-After value: a non-negative
// number of seconds or an HTTP date.
func ValidRetryAfter(v string) bool {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n >= 0
	}
	_, err := http.ParseTime(v)
	return err == nil
}

// faultState is the immutable published form of Faults (without Script).
type faultState struct {
	f           Faults
	outageUntil time.Time
	flapStart   time.Time // zero without flapping
	flapEnd     time.Time // zero: flapping does not end
	failIDs     map[string]bool
	retryAfter  string
	limiter     *bucket // nil without a rate limit
}

func (fs *faultState) latency() time.Duration {
	d := fs.f.Latency.D()
	if j := fs.f.LatencyJitter.D(); j > 0 {
		d += time.Duration(rand.Int64N(int64(j) + 1))
	}
	return d
}

// inOutage reports whether CXone is down at now: within OutageFor, or in
// a down phase of the flapping.
func (fs *faultState) inOutage(now time.Time) bool {
	if !fs.outageUntil.IsZero() && now.Before(fs.outageUntil) {
		return true
	}
	if fs.flapStart.IsZero() || (!fs.flapEnd.IsZero() && !now.Before(fs.flapEnd)) {
		return false
	}
	down, up := fs.f.FlapDown.D(), fs.f.FlapUp.D()
	return now.Sub(fs.flapStart)%(down+up) < down
}

// location is the Location header of a 3xx answer, "" for other statuses.
func (fs *faultState) location(status int) string {
	if status >= 300 && status < 400 {
		return fs.f.Location
	}
	return ""
}

// SetFaults replaces every fault. OutageFor and the flapping start now; the
// rate limiter starts full; Script replaces any unconsumed script.
func (s *Server) SetFaults(f Faults) { s.setFaults(f, true) }

func (s *Server) setFaults(f Faults, logIt bool) {
	fs := &faultState{f: f, retryAfter: f.RetryAfter}
	fs.f.Script = nil
	if fs.retryAfter == "" {
		fs.retryAfter = "1"
	}
	now := time.Now()
	if f.OutageFor > 0 {
		fs.outageUntil = now.Add(f.OutageFor.D())
	}
	if f.FlapDown > 0 && f.FlapUp > 0 {
		fs.flapStart = now
		if f.FlapFor > 0 {
			fs.flapEnd = now.Add(f.FlapFor.D())
		}
	}
	if len(f.FailCorrelationIDs) > 0 {
		fs.failIDs = make(map[string]bool, len(f.FailCorrelationIDs))
		for _, id := range f.FailCorrelationIDs {
			fs.failIDs[id] = true
		}
	}
	if f.RateLimit > 0 {
		fs.limiter = newBucket(f.RateLimit)
	}
	s.scriptMu.Lock()
	s.script = append([]Response(nil), f.Script...)
	s.scriptLen.Store(int64(len(s.script)))
	s.faults.Store(fs)
	s.scriptMu.Unlock()
	if logIt {
		s.log.Info("sim: faults set", "faults", fs.f, "script", len(f.Script))
	}
}

// Faults returns the current faults; Script holds the answers not yet
// consumed.
func (s *Server) Faults() Faults {
	s.scriptMu.Lock()
	f := s.faults.Load().f
	if len(s.script) > 0 {
		f.Script = append([]Response(nil), s.script...)
	}
	s.scriptMu.Unlock()
	return f
}

// popScript consumes the next scripted answer, if any.
func (s *Server) popScript() (Response, bool) {
	if s.scriptLen.Load() == 0 {
		return Response{}, false
	}
	s.scriptMu.Lock()
	defer s.scriptMu.Unlock()
	if len(s.script) == 0 {
		return Response{}, false
	}
	r := s.script[0]
	s.script = s.script[1:]
	s.scriptLen.Store(int64(len(s.script)))
	return r, true
}

// bucket is a token bucket: rate tokens/s, burst max(1, rate/10).
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64) *bucket {
	burst := max(1, rate/10)
	return &bucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// allow takes a token if there is one.
func (b *bucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+el.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}
