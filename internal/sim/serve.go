package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
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
	return start(ctx, addr, cfg, nil)
}

// StartTLS is Start over HTTPS with tlsCfg (which must hold a certificate,
// e.g. certs.Bundle.ServerConfig); the base URL is https://host:port.
func StartTLS(ctx context.Context, addr string, cfg Config, tlsCfg *tls.Config) (*Server, string, error) {
	if tlsCfg == nil || (len(tlsCfg.Certificates) == 0 && tlsCfg.GetCertificate == nil) {
		return nil, "", errors.New("sim: StartTLS needs a TLS configuration with a certificate")
	}
	return start(ctx, addr, cfg, tlsCfg)
}

func start(ctx context.Context, addr string, cfg Config, tlsCfg *tls.Config) (*Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("sim: listen: %w", err)
	}
	s := New(cfg)
	go func() {
		if err := s.serve(ctx, ln, tlsCfg); err != nil {
			s.log.Error("sim: serve failed", "addr", ln.Addr().String(), "error", err.Error())
		}
	}()
	return s, URL(ln.Addr(), tlsCfg != nil), nil
}

// URL is the base URL of a simulator listening on addr: https:// when it
// serves TLS, else http://.
func URL(addr net.Addr, tls bool) string {
	if tls {
		return "https://" + addr.String()
	}
	return "http://" + addr.String()
}

// Serve serves s on ln until ctx is done, then shuts down: requests in
// flight see their context end (a simulated latency stops at once), and
// Serve returns when every connection is closed. It closes ln. It returns
// nil after a shutdown caused by ctx, else the serving error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, nil)
}

// ServeTLS is Serve over TLS with tlsCfg, which must hold a certificate
// (Certificates or GetCertificate). Both HTTP/1.1 and HTTP/2 are offered.
// A client that refuses the certificate fails its handshake, which is
// logged (Info, "http: TLS handshake error …") through the Server's logger.
func (s *Server) ServeTLS(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	if tlsCfg == nil || (len(tlsCfg.Certificates) == 0 && tlsCfg.GetCertificate == nil) {
		_ = ln.Close()
		return errors.New("sim: ServeTLS needs a TLS configuration with a certificate")
	}
	return s.serve(ctx, ln, tlsCfg)
}

func (s *Server) serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg.Clone()
		if srv.TLSConfig.MinVersion == 0 {
			srv.TLSConfig.MinVersion = tls.VersionTLS12
		}
		// Handshake failures (a client that does not trust the CA) go to
		// the simulator's log, not the process's standard logger.
		srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelInfo)
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
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
