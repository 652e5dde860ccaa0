package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/sim"
)

func init() {
	register("sim", "run the CXone simulator", runSim)
}

// simSettings are the settings of `cxbridge sim`.
type simSettings struct {
	addr                         string
	clientID, accessKeyID        string
	clientSecret, accessKeySec   config.Secret
	tokenTTL                     time.Duration
	latency, jitter, outage, exp time.Duration
	errorRate, rateLimit         float64
	retryAfter, forbid           string
}

func simFlags(st *simSettings) *config.FlagSet {
	fs := config.NewFlagSet("sim")
	fs.StringVar(&st.addr, "addr", "127.0.0.1:8081", "listen address host:port (port 0 picks a free port)")
	fs.StringVar(&st.clientID, "client-id", sim.DefaultClientID, "OAuth2 client id the token endpoint accepts")
	fs.SecretVar(&st.clientSecret, "client-secret",
		"OAuth2 client secret the token endpoint accepts; when unset: "+sim.DefaultClientSecret)
	fs.StringVar(&st.accessKeyID, "access-key-id", sim.DefaultAccessKeyID, "access key id (password grant username) the token endpoint accepts")
	fs.SecretVar(&st.accessKeySec, "access-key-secret",
		"access key secret (password grant password) the token endpoint accepts; when unset: "+sim.DefaultAccessKeySecret)
	fs.DurationVar(&st.tokenTTL, "token-ttl", sim.DefaultTokenTTL, "lifetime of issued tokens (expires_in)")
	fs.DurationVar(&st.latency, "latency", 0, "fault: latency added to every publish")
	fs.DurationVar(&st.jitter, "latency-jitter", 0, "fault: extra uniform latency 0..jitter per publish")
	fs.Float64Var(&st.errorRate, "error-rate", 0, "fault: share of publishes answered 503 (0..1)")
	fs.DurationVar(&st.outage, "outage-for", 0, "fault: every publish and token request answers 503 for this long from start")
	fs.Float64Var(&st.rateLimit, "rate-limit", 0, "fault: accepted publishes per second, 429 over it (0 = unlimited)")
	fs.StringVar(&st.retryAfter, "retry-after", "1", "fault: Retry-After of rate-limit 429s (seconds or HTTP date)")
	fs.DurationVar(&st.exp, "token-expiry", 0, "fault: reject tokens older than this with 401, whatever expires_in said (0 = off)")
	fs.StringVar(&st.forbid, "forbid-event-type", "", "fault: answer 403 to events of this eventType")
	return fs
}

// validate returns one problem line per bad setting.
func (st *simSettings) validate() error {
	var p config.Problems
	if _, port, err := net.SplitHostPort(st.addr); err != nil {
		p.Add("addr", "must be host:port, got %q", st.addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.Add("addr", "port must be 0..65535, got %q", port)
	}
	if st.clientID == "" {
		p.Add("client-id", "must not be empty")
	}
	if st.accessKeyID == "" {
		p.Add("access-key-id", "must not be empty")
	}
	if st.tokenTTL < time.Second {
		p.Add("token-ttl", "must be at least 1s, got %s", st.tokenTTL)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"latency", st.latency}, {"latency-jitter", st.jitter}, {"outage-for", st.outage}, {"token-expiry", st.exp}} {
		if d.v < 0 {
			p.Add(d.name, "must not be negative, got %s", d.v)
		}
	}
	if !(st.errorRate >= 0 && st.errorRate <= 1) {
		p.Add("error-rate", "must be between 0 and 1, got %v", st.errorRate)
	}
	if !(st.rateLimit >= 0 && st.rateLimit <= 1e9) {
		p.Add("rate-limit", "must be between 0 (unlimited) and 1e9, got %v", st.rateLimit)
	}
	if !sim.ValidRetryAfter(st.retryAfter) {
		p.Add("retry-after", "must be a number of seconds or an HTTP date, got %q", st.retryAfter)
	}
	return p.Err()
}

func (st *simSettings) config(log *slog.Logger) sim.Config {
	secret := func(s config.Secret, def string) string {
		if s.IsSet() {
			return s.Value()
		}
		return def
	}
	return sim.Config{
		ClientID: st.clientID, ClientSecret: secret(st.clientSecret, sim.DefaultClientSecret),
		AccessKeyID: st.accessKeyID, AccessKeySecret: secret(st.accessKeySec, sim.DefaultAccessKeySecret),
		TokenTTL: st.tokenTTL,
		Faults: sim.Faults{
			Latency: sim.Duration(st.latency), LatencyJitter: sim.Duration(st.jitter),
			ErrorRate: st.errorRate, OutageFor: sim.Duration(st.outage),
			RateLimit: st.rateLimit, RetryAfter: st.retryAfter,
			TokenExpiry: sim.Duration(st.exp), ForbidEventType: st.forbid,
		},
		Logger: log,
	}
}

// runSim serves the simulator until ctx ends.
func runSim(ctx context.Context, args []string, env Env) error {
	var st simSettings
	fs := simFlags(&st)
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	if err := st.validate(); err != nil {
		return err
	}
	log := newLogger(env.Stderr, slog.LevelInfo)
	cfg := st.config(log)
	ln, err := net.Listen("tcp", st.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s := sim.New(cfg)
	log.Info("cxone simulator listening",
		"addr", ln.Addr().String(), "url", "http://"+ln.Addr().String(),
		"client_id", cfg.ClientID, "access_key_id", cfg.AccessKeyID, "token_ttl", cfg.TokenTTL.String(),
		"faults", cfg.Faults)
	if err := s.Serve(ctx, ln); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("cxone simulator stopped")
	return nil
}
