// Package admin serves the worker's admin endpoints: /healthz (the process
// loop is alive), /readyz (JSON per component, 503 with the reasons when
// not ready) and /metrics (Prometheus, OpenMetrics when asked for).
//
// It knows nothing of Kafka or CXone: components report through Checks.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one component is ready, and why not. It must be
// quick: it reads state, it does not do I/O.
type Check func() (ok bool, detail string)

// Component is a named readiness check.
type Component struct {
	Name  string
	Check Check
	// Advisory components are reported in /readyz's detail (and its
	// warnings) but do not make the member not ready: readiness says
	// that this member is in its group and working, and a state every
	// member shares — CXone failing, refusing or throttling — would take
	// every pod out at once (a PodDisruptionBudget then allows no
	// eviction, rollouts and node drains hang) without helping anything.
	Advisory bool
}

// Server is the admin HTTP handler.
type Server struct {
	mux        *http.ServeMux
	components []Component
	heartbeat  atomic.Int64 // unix nanos of the last Beat
	staleAfter time.Duration
	live       Check // nil: the process loop alone
}

// New returns the admin handler. staleAfter is how long without a Beat
// makes /healthz fail (0 = never).
func New(g prometheus.Gatherer, staleAfter time.Duration, components ...Component) *Server {
	s := &Server{mux: http.NewServeMux(), components: components, staleAfter: staleAfter}
	s.Beat()
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	return s
}

// EnablePprof serves Go's profiles under /debug/pprof/ (opt in: they show
// the process's memory and stacks to whoever reaches the admin port).
func (s *Server) EnablePprof() {
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// SetLiveness makes /healthz fail (503, with the detail) while check does:
// a state only a restart mends, such as a wedged consumer loop. It must be
// quick, and must not fail for what a restart would not fix (an outage of
// a dependency every member shares).
func (s *Server) SetLiveness(check Check) { s.live = check }

// Handle adds a route (the status page).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Beat marks the process loop alive.
func (s *Server) Beat() { s.heartbeat.Store(time.Now().UnixNano()) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	age := time.Since(time.Unix(0, s.heartbeat.Load()))
	if s.staleAfter > 0 && age > s.staleAfter {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "stalled", "last_beat_seconds": age.Seconds()})
		return
	}
	if s.live != nil {
		if ok, detail := s.live(); !ok {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "wedged", "detail": detail})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// ComponentStatus is one component in the /readyz answer.
type ComponentStatus struct {
	Ready  bool   `json:"ready"`
	Detail string `json:"detail,omitempty"`
	// Advisory: its state is reported, but readiness does not depend on it.
	Advisory bool `json:"advisory,omitempty"`
}

// Readiness is the /readyz answer.
type Readiness struct {
	Ready      bool                       `json:"ready"`
	Reasons    []string                   `json:"reasons,omitempty"`  // why not ready
	Warnings   []string                   `json:"warnings,omitempty"` // advisory components not ready
	Components map[string]ComponentStatus `json:"components"`
}

// Ready evaluates every component.
func (s *Server) Ready() Readiness {
	r := Readiness{Ready: true, Components: map[string]ComponentStatus{}}
	for _, c := range s.components {
		ok, detail := c.Check()
		r.Components[c.Name] = ComponentStatus{Ready: ok, Detail: detail, Advisory: c.Advisory}
		switch {
		case ok:
		case c.Advisory:
			r.Warnings = append(r.Warnings, c.Name+": "+detail)
		default:
			r.Ready = false
			r.Reasons = append(r.Reasons, c.Name+": "+detail)
		}
	}
	sort.Strings(r.Reasons)
	sort.Strings(r.Warnings)
	return r
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	r := s.Ready()
	status := http.StatusOK
	if !r.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve listens on addr and serves h until ctx ends. ready, when not nil,
// gets the bound address once listening.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("admin server", "error", err.Error())
	}
	return nil
}
