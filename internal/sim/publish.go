package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cxbridge/cxbridge/internal/event"
)

// Publish headers that must match the body.
const (
	HeaderCorrelationID = "X-Correlation-ID"
	HeaderTraceID       = "X-Trace-ID"
	HeaderSourceSystem  = "X-Source-System"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBuf = 64 << 10

// handlePublish is POST /api/v2/events/publish; the package doc lists its
// checks in order.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	// The body is read first, whatever the checks say later: the server
	// notices a client that leaves only once the body is consumed, and a
	// simulated latency must end with the request.
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuf {
			bufPool.Put(buf)
		}
	}()
	bodyErr := readBody(w, r, buf)
	fs, ok := s.waitLatency(w, r)
	if !ok {
		return
	}
	if !s.admit(w, r, fs) {
		return
	}
	ev, ok := s.readEvent(w, r, buf.Bytes(), bodyErr)
	if !ok {
		return
	}
	if s.injectFault(w, fs, ev) {
		return
	}
	s.accept(w, r, ev)
}

// waitLatency waits the simulated latency, and returns the faults in force
// after it; false when the request ended during it (it was answered 503).
func (s *Server) waitLatency(w http.ResponseWriter, r *http.Request) (*faultState, bool) {
	fs := s.faults.Load()
	d := fs.latency()
	if d <= 0 {
		return fs, true
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-r.Context().Done():
		// The client left, or the server stops: never a silent 200.
		// Not counted in ByStatus (nobody may be there to read it).
		t.Stop()
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "service_unavailable", Message: "request ended during the simulated latency"})
		return nil, false
	}
	return s.faults.Load(), true
}

// admit checks what comes before the body: the outage, the token, a
// scripted or forced answer, the token's scope. false: answered.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, fs *faultState) bool {
	now := time.Now()
	if fs.inOutage(now) {
		s.fail(w, http.StatusServiceUnavailable, errorBody{Error: "service_unavailable", Message: "simulated outage"})
		return false
	}
	tok := s.authenticate(w, r, fs, now)
	if tok == nil {
		return false
	}
	if resp, ok := s.popScript(); ok && resp.Status >= 300 {
		s.answer(w, resp, fs.location(resp.Status))
		return false
	}
	if st := fs.f.ForceStatus; st >= 300 {
		resp := Response{Status: st}
		if st == http.StatusTooManyRequests {
			resp.RetryAfter = fs.retryAfter
		}
		s.answer(w, resp, fs.location(st))
		return false
	}
	if !tok.publish {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cxone-sim", error="insufficient_scope", scope="event:publish"`)
		s.fail(w, http.StatusForbidden, errorBody{Error: "insufficient_scope", Message: "the token's scope " + strconv.Quote(tok.scope) + " lacks event:publish"})
		return false
	}
	return true
}

// readEvent checks the body and the headers: size, Content-Type, the event
// contract, and the id headers matching the body. false: answered 4xx.
func (s *Server) readEvent(w http.ResponseWriter, r *http.Request, body []byte, bodyErr error) (*event.Event, bool) {
	if bodyErr != nil {
		var mbe *http.MaxBytesError
		if errors.As(bodyErr, &mbe) {
			s.fail(w, http.StatusRequestEntityTooLarge, errorBody{Error: "too_large", Reason: string(event.ReasonTooLarge),
				Message: "request body over " + strconv.Itoa(event.MaxBodyBytes) + " bytes"})
		} else {
			s.fail(w, http.StatusBadRequest, errorBody{Error: "invalid_request", Message: "cannot read the body: " + bodyErr.Error()})
		}
		return nil, false
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.fail(w, http.StatusUnsupportedMediaType, errorBody{Error: "unsupported_media_type", Message: "Content-Type must be application/json, got " + strconv.Quote(ct)})
			return nil, false
		}
	}
	ev, err := event.Parse(body)
	if err != nil {
		eb := errorBody{Error: "invalid_event", Message: err.Error()}
		var ee *event.Error
		if errors.As(err, &ee) {
			eb.Field, eb.Reason, eb.Message = ee.Field, string(ee.Reason), ee.Msg
		}
		s.fail(w, http.StatusBadRequest, eb)
		return nil, false
	}
	for _, c := range [...]struct{ field, value, header string }{
		{"correlationId", ev.CorrelationID, HeaderCorrelationID},
		{"traceId", ev.TraceID, HeaderTraceID},
		{"source", ev.Source, HeaderSourceSystem},
	} {
		if c.value == "" {
			s.fail(w, http.StatusBadRequest, errorBody{Error: "invalid_event", Field: c.field, Reason: string(event.ReasonInvalidEvent),
				Message: "is required by the simulator (the bridge always sends it)"})
			return nil, false
		}
		hv := r.Header.Get(c.header)
		switch {
		case hv == "":
			s.fail(w, http.StatusBadRequest, errorBody{Error: "invalid_header", Field: c.header, Header: c.header,
				Message: c.header + " header is required"})
			return nil, false
		case hv != strings.Trim(c.value, " \t"):
			s.fail(w, http.StatusBadRequest, errorBody{Error: "invalid_header", Field: c.header, Header: c.header,
				Message: c.header + " header must equal the body's " + c.field})
			return nil, false
		}
	}
	return ev, true
}

// injectFault answers a valid event with the faults that apply to it: a
// failing correlation id, a forbidden event type, the error rate, the
// rate limit. true: answered.
func (s *Server) injectFault(w http.ResponseWriter, fs *faultState, ev *event.Event) bool {
	switch {
	case fs.failIDs[ev.CorrelationID]:
		s.fail(w, http.StatusInternalServerError, errorBody{Error: "internal_server_error", Message: "simulated failure of this correlation id"})
	case fs.f.ForbidEventType != "" && ev.EventType == fs.f.ForbidEventType:
		s.fail(w, http.StatusForbidden, errorBody{Error: "forbidden", Field: "eventType", Message: "event type " + strconv.Quote(ev.EventType) + " is not registered (simulated)"})
	case fs.f.ErrorRate > 0 && rand.Float64() < fs.f.ErrorRate:
		s.fail(w, http.StatusServiceUnavailable, errorBody{Error: "service_unavailable", Message: "simulated error"})
	case fs.limiter != nil && !fs.limiter.allow(time.Now()):
		w.Header().Set("Retry-After", fs.retryAfter)
		s.fail(w, http.StatusTooManyRequests, errorBody{Error: "too_many_requests", Message: "simulated rate limit"})
	default:
		return false
	}
	return true
}

// accept records the event and answers 200.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, ev *event.Event) {
	s.record(ev, r.Header)
	s.count(http.StatusOK)
	out := make([]byte, 0, len(ev.CorrelationID)+48)
	out = append(out, `{"status":"accepted","correlationId":`...)
	out = appendJSONString(out, ev.CorrelationID)
	out = append(out, '}')
	writeRaw(w, http.StatusOK, "application/json", out)
}

func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// readBody reads at most event.MaxBodyBytes into buf; over that it returns
// an *http.MaxBytesError (without reading more).
func readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) error {
	if r.ContentLength > event.MaxBodyBytes {
		return &http.MaxBytesError{Limit: event.MaxBodyBytes}
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, event.MaxBodyBytes))
	return err
}

// answer writes a scripted or forced answer; location, when set, is its
// Location header.
func (s *Server) answer(w http.ResponseWriter, resp Response, location string) {
	if resp.RetryAfter != "" {
		w.Header().Set("Retry-After", resp.RetryAfter)
	}
	if location != "" {
		w.Header().Set("Location", location)
	}
	s.count(resp.Status)
	if resp.Body == "" {
		writeJSON(w, resp.Status, errorBody{Error: statusCode(resp.Status), Message: "simulated status"})
		return
	}
	ct := "text/plain; charset=utf-8"
	if b := strings.TrimSpace(resp.Body); strings.HasPrefix(b, "{") || strings.HasPrefix(b, "[") {
		ct = "application/json"
	}
	writeRaw(w, resp.Status, ct, []byte(resp.Body))
}

// fail counts and writes an error answer.
func (s *Server) fail(w http.ResponseWriter, status int, eb errorBody) {
	s.count(status)
	writeJSON(w, status, eb)
}

func (s *Server) count(status int) {
	if status >= 0 && status < len(s.byStatus) {
		s.byStatus[status].Add(1)
	}
}

// statusCode is a status as an error code: 503 → "service_unavailable".
func statusCode(status int) string {
	t := http.StatusText(status)
	if t == "" {
		return "status_" + strconv.Itoa(status)
	}
	return strings.ToLower(strings.NewReplacer(" ", "_", "-", "_", "'", "").Replace(t))
}

// record keeps an accepted event.
func (s *Server) record(ev *event.Event, h http.Header) {
	id := ev.CorrelationID
	sh := &s.acc[s.shard(id)]
	sh.mu.Lock()
	a, seen := sh.m[id]
	if seen {
		a.Count++
	}
	sh.mu.Unlock()
	if !seen {
		hdr := h.Clone()
		hdr.Del("Authorization")
		fresh := &Accepted{EventType: ev.EventType, Source: ev.Source, Timestamp: ev.Timestamp,
			CorrelationID: id, TraceID: ev.TraceID, Count: 1, Headers: hdr, Data: ev.Data}
		sh.mu.Lock()
		if a, seen = sh.m[id]; seen { // accepted meanwhile by another request
			a.Count++
		} else {
			sh.m[id] = fresh
		}
		sh.mu.Unlock()
	}
	s.accepted.Add(1)
	if seen {
		s.duplicates.Add(1)
	} else {
		s.distinct.Add(1)
	}
	if key, seq, ok := keySeq(ev.Data); ok {
		s.trackKey(key, seq)
	}
}

// keySeq returns data.key (a string) and data.seq (an integer) when data has both.
func keySeq(data []byte) (string, int64, bool) {
	if !bytes.Contains(data, []byte(`"seq"`)) || !bytes.Contains(data, []byte(`"key"`)) {
		return "", 0, false
	}
	var ks struct {
		Key json.RawMessage `json:"key"`
		Seq json.RawMessage `json:"seq"`
	}
	if json.Unmarshal(data, &ks) != nil || len(ks.Key) == 0 || ks.Key[0] != '"' || len(ks.Seq) == 0 {
		return "", 0, false
	}
	var key string
	if json.Unmarshal(ks.Key, &key) != nil {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(string(ks.Seq), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(ks.Seq), 64)
		if ferr != nil || f != float64(int64(f)) {
			return "", 0, false
		}
		seq = int64(f)
	}
	return key, seq, true
}

// trackKey appends seq to key's arrivals and counts order violations.
func (s *Server) trackKey(key string, seq int64) {
	ks := &s.keyS[s.shard(key)]
	ks.mu.Lock()
	kt := ks.m[key]
	newKey, violation := kt == nil, false
	if newKey {
		kt = &keyTrack{seen: map[int64]struct{}{}, max: seq}
		ks.m[key] = kt
	} else {
		if _, dup := kt.seen[seq]; !dup && seq < kt.max {
			violation = true
		}
		kt.max = max(kt.max, seq)
	}
	kt.seen[seq] = struct{}{}
	kt.seqs = append(kt.seqs, seq)
	ks.mu.Unlock()
	if newKey {
		s.keys.Add(1)
	}
	if violation {
		s.orderViolations.Add(1)
	}
}
