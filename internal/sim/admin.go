package sim

import (
	"bufio"
	"encoding/json"
	"net/http"
)

// handleStats is GET /sim/stats.
func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// handleGetFaults is GET /sim/faults.
func (s *Server) handleGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

// handlePutFaults is PUT /sim/faults: the body (Faults as JSON, unknown
// fields refused) replaces every fault. It answers the faults now in force.
func (s *Server) handlePutFaults(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	var f Faults
	if err := dec.Decode(&f); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_faults", Message: err.Error()})
		return
	}
	if dec.More() {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_faults", Message: "one JSON object expected"})
		return
	}
	if err := f.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_faults", Message: err.Error()})
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, s.Faults())
}

// handleReset is POST /sim/reset.
func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

// handleRevoke is POST /sim/revoke-tokens.
func (s *Server) handleRevoke(w http.ResponseWriter, _ *http.Request) {
	s.RevokeTokens()
	w.WriteHeader(http.StatusNoContent)
}

// handleEvent is GET /sim/events/{correlationId}.
func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("correlationId")
	a, ok := s.Lookup(id)
	if !ok {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Message: "no event accepted with this correlation id"})
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// AcceptedLine is one line of GET /sim/accepted.
type AcceptedLine struct {
	CorrelationID string `json:"correlation_id"`
	Count         int    `json:"count"`
}

// handleAccepted is GET /sim/accepted: one JSON object per line for every
// accepted correlation id, so that a harness outside the process can check
// delivery record by record.
func (s *Server) handleAccepted(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	for id, n := range s.AcceptedCounts() {
		if err := enc.Encode(AcceptedLine{CorrelationID: id, Count: n}); err != nil {
			return
		}
	}
	_ = bw.Flush()
}
