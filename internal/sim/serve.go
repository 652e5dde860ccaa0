package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds the graceful shutdown of Serve once its ctx ends;
// connections still busy after it are closed.
const ShutdownTimeout = 5 * time.Second

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves a new
// Server for cfg in the background until ctx is done, then shuts it down.
// It returns the Server and its base URL (http://host:port).
func Start(ctx context.Context, addr string, cfg Config) (*Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("sim: listen: %w", err)
	}
	s := New(cfg)
	go func() {
		if err := s.Serve(ctx, ln); err != nil {
			s.log.Error("sim: serve failed", "addr", ln.Addr().String(), "error", err.Error())
		}
	}()
	return s, "http://" + ln.Addr().String(), nil
}

// Serve serves s on ln until ctx is done, then shuts down: requests in
// flight see their context end (a simulated latency stops at once), and
// Serve returns when every connection is closed. It closes ln. It returns
// nil after a shutdown caused by ctx, else the serving error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc: // the listener failed
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	s.log.Debug("sim: stopped", "addr", ln.Addr().String())
	return nil
}
