package config

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// CXone holds the settings of the CXone publisher, shared by every
// subcommand that publishes. Their defaults are DefaultCXone's.
type CXone struct {
	BaseURL         string        // Required.
	TokenURL        string        // Optional; "" is {BaseURL}/api/v2/authorization/token.
	TokenStyle      string        // json, form or password.
	ClientID        string        // Required for every style.
	ClientSecret    Secret        // Required for every style.
	AccessKeyID     string        // Required for the password style.
	AccessKeySecret Secret        // Required for the password style.
	Scope           string        // Requested with every token.
	Timeout         time.Duration // One attempt's deadline.
	AllowHTTP       bool          // Allow http:// to a non-loopback host.
	CAFile          string        // Optional PEM file of CAs trusted for CXone.
	MaxConns        int           // Connections to CXone.

	TokenRefreshBefore time.Duration
	MaxRetries         int
	RetryBackoff       time.Duration // First retry's wait, doubling.
	MaxBackoff         time.Duration // Cap of every wait.
	BreakerFailures    int           // Consecutive failures that open the breaker.
	BreakerOpenTimeout time.Duration // Open → half-open, on average (each opening: ½–1½ of it).
	BreakerProbes      int           // Half-open probes that must succeed.
	RateLimit          float64       // Publish attempts/s of the whole consumer group, 0 = none.
}

// TokenPath is the default token endpoint, relative to the base URL.
const TokenPath = "/api/v2/authorization/token"

// Register defines the CXone flags on fs with their defaults.
func (c *CXone) Register(fs *FlagSet) {
	d := DefaultCXone()
	fs.StringVar(&c.BaseURL, "cxone-base-url", c.BaseURL, "CXone API base URL, e.g. https://api-na1.niceincontact.com (required)")
	fs.StringVar(&c.TokenURL, "cxone-token-url", c.TokenURL, "token endpoint URL (default {cxone-base-url}"+TokenPath+")")
	fs.StringVar(&c.TokenStyle, "cxone-token-style", or(c.TokenStyle, d.TokenStyle), "token request style: json (tutorial), form (RFC 6749 client credentials) or password (CXone access key)")
	fs.StringVar(&c.ClientID, "cxone-client-id", c.ClientID, "OAuth2 client id")
	fs.SecretVar(&c.ClientSecret, "cxone-client-secret", "OAuth2 client secret")
	fs.StringVar(&c.AccessKeyID, "cxone-access-key-id", c.AccessKeyID, "CXone access key id (password style)")
	fs.SecretVar(&c.AccessKeySecret, "cxone-access-key-secret", "CXone access key secret (password style)")
	fs.StringVar(&c.Scope, "cxone-scope", or(c.Scope, d.Scope), "OAuth2 scope requested")
	fs.DurationVar(&c.Timeout, "cxone-timeout", orDur(c.Timeout, d.Timeout), "deadline of one publish attempt")
	fs.BoolVar(&c.AllowHTTP, "cxone-allow-http", c.AllowHTTP, "allow plain http:// CXone URLs to a non-loopback host")
	fs.StringVar(&c.CAFile, "cxone-ca-file", c.CAFile, "PEM file of CA certificates trusted for CXone (default: the system's)")
	fs.IntVar(&c.MaxConns, "cxone-max-conns", orInt(c.MaxConns, d.MaxConns), "most connections to CXone")
	fs.DurationVar(&c.TokenRefreshBefore, "cxone-token-refresh-before", orDur(c.TokenRefreshBefore, d.TokenRefreshBefore), "refresh a token this long before it expires (at most half its lifetime)")
	fs.IntVar(&c.MaxRetries, "cxone-max-retries", orInt(c.MaxRetries, d.MaxRetries), "retries of a 5xx, redirect, timeout or network error before the event is dead-lettered, counting only failures while CXone answered other publishes normally (an outage spends none)")
	fs.DurationVar(&c.RetryBackoff, "cxone-retry-backoff", orDur(c.RetryBackoff, d.RetryBackoff), "wait before the first retry, doubling after, plus jitter")
	fs.DurationVar(&c.MaxBackoff, "cxone-max-backoff", orDur(c.MaxBackoff, d.MaxBackoff), "cap of every retry wait and Retry-After")
	fs.IntVar(&c.BreakerFailures, "cxone-breaker-failures", orInt(c.BreakerFailures, d.BreakerFailures), "consecutive failed attempts that open the circuit breaker")
	fs.DurationVar(&c.BreakerOpenTimeout, "cxone-breaker-open-timeout", orDur(c.BreakerOpenTimeout, d.BreakerOpenTimeout), "how long the breaker stays open before a probe, on average: each opening lasts a random ½ to 1½ of it, so probes cannot keep in step with a periodic fault")
	fs.IntVar(&c.BreakerProbes, "cxone-breaker-probes", orInt(c.BreakerProbes, d.BreakerProbes), "successful half-open probes that close the breaker")
	fs.Float64Var(&c.RateLimit, "cxone-rate-limit", c.RateLimit, "most publish attempts per second of the whole consumer group: each member allows its share (partitions held ÷ partitions of the input topics, updated at every rebalance), halved by a 429, then recovering; 0: none until CXone answers 429, then one found from its answers")
	for _, old := range CXoneRenamed {
		fs.Deprecated(old, "cxone-"+old)
	}
}

// CXoneRenamed are the CXone settings' names before every one began with
// cxone-: each still works, with a warning.
var CXoneRenamed = []string{"token-refresh-before", "max-retries", "retry-backoff", "max-backoff",
	"breaker-failures", "breaker-open-timeout", "breaker-probes", "rate-limit"}

// Validate adds a problem for every bad CXone setting and fills the token URL.
func (c *CXone) Validate(p *Problems) {
	base := c.checkURL(p, "cxone-base-url", c.BaseURL)
	if c.TokenURL == "" && base {
		c.TokenURL = strings.TrimRight(c.BaseURL, "/") + TokenPath
	} else if c.TokenURL != "" {
		c.checkURL(p, "cxone-token-url", c.TokenURL)
	}
	switch c.TokenStyle {
	case "json", "form", "password":
	default:
		p.Add("cxone-token-style", "must be json, form or password, got %q", c.TokenStyle)
	}
	if c.ClientID == "" {
		p.Add("cxone-client-id", "is required")
	}
	if !c.ClientSecret.IsSet() {
		p.Add("cxone-client-secret", "is required (or set %s)", FileEnvVar("cxone-client-secret"))
	}
	if c.TokenStyle == "password" {
		if c.AccessKeyID == "" {
			p.Add("cxone-access-key-id", "is required with --cxone-token-style password")
		}
		if !c.AccessKeySecret.IsSet() {
			p.Add("cxone-access-key-secret", "is required with --cxone-token-style password (or set %s)", FileEnvVar("cxone-access-key-secret"))
		}
	}
	positive(p, "cxone-timeout", c.Timeout)
	positive(p, "cxone-retry-backoff", c.RetryBackoff)
	positive(p, "cxone-max-backoff", c.MaxBackoff)
	positive(p, "cxone-breaker-open-timeout", c.BreakerOpenTimeout)
	if c.TokenRefreshBefore < 0 {
		p.Add("cxone-token-refresh-before", "must not be negative, got %s", c.TokenRefreshBefore)
	}
	if c.MaxConns < 1 {
		p.Add("cxone-max-conns", "must be at least 1, got %d", c.MaxConns)
	}
	if c.MaxRetries < 0 {
		p.Add("cxone-max-retries", "must not be negative, got %d", c.MaxRetries)
	}
	if c.BreakerFailures < 1 {
		p.Add("cxone-breaker-failures", "must be at least 1, got %d", c.BreakerFailures)
	}
	if c.BreakerProbes < 1 {
		p.Add("cxone-breaker-probes", "must be at least 1, got %d", c.BreakerProbes)
	}
	if c.RateLimit < 0 {
		p.Add("cxone-rate-limit", "must not be negative, got %g", c.RateLimit)
	}
}

// checkURL reports whether raw is a usable CXone URL: absolute, http or
// https, and https unless the host is loopback or AllowHTTP is set.
func (c *CXone) checkURL(p *Problems, name, raw string) bool {
	if raw == "" {
		p.Add(name, "is required")
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		if strings.Contains(raw, "@") {
			raw = "(not shown: it may hold credentials)"
		}
		p.Add(name, "must be an absolute http(s) URL, got %q", raw)
		return false
	}
	if u.User != nil {
		p.Add(name, "must not hold credentials; use --cxone-client-id and --cxone-client-secret")
		return false
	}
	if u.Scheme == "http" && !c.AllowHTTP && !IsLoopback(u.Hostname()) {
		p.Add(name, "must be https for a non-loopback host (or pass --cxone-allow-http), got %q", raw)
		return false
	}
	return true
}

// IsLoopback reports whether host names this machine: localhost or a loopback IP.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func positive(p *Problems, name string, d time.Duration) {
	if d <= 0 {
		p.Add(name, "must be positive, got %s", d)
	}
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
