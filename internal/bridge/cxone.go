// Package bridge wires cxbridge's parts together from validated settings:
// the way to CXone (HTTP client, token cache, delivery policy), the
// Processor that settles each record, the worker.
package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/oauth2"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
)

// CXone is the worker's way to CXone, built from settings: the
// delivery.Publisher (the outcome policy around the HTTP client) and the
// token cache behind it.
type CXone struct {
	*delivery.Publisher
	Tokens *cxone.Tokens
}

// NewCXone builds the way to CXone of validated settings c.
func NewCXone(c config.CXone, log *slog.Logger, hooks delivery.Hooks, onRefresh func(expiresAt int64, err error)) (*CXone, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tcfg, err := tlsConfig(c.CAFile)
	if err != nil {
		return nil, err
	}
	hc := cxone.NewHTTPClient(cxone.TransportConfig{MaxConns: c.MaxConns, TLS: tcfg, ResponseHeaderTimeout: c.Timeout})
	fetcher, err := cxone.NewRotatingFetcher(credentials(c, log), hc)
	if err != nil {
		return nil, err
	}
	tokens := cxone.NewTokens(fetcher, cxone.TokensConfig{
		RefreshBefore: c.TokenRefreshBefore,
		FetchTimeout:  c.Timeout,
		RetryMax:      c.MaxBackoff,
		Logger:        log,
		OnRefresh:     tokenHook(onRefresh),
	})
	pub := delivery.New(delivery.Config{
		MaxRetries:  c.MaxRetries,
		BackoffBase: c.RetryBackoff,
		MaxBackoff:  c.MaxBackoff,
		Breaker: delivery.BreakerConfig{
			Failures:       uint32(c.BreakerFailures),
			OpenTimeout:    c.BreakerOpenTimeout,
			HalfOpenProbes: uint32(c.BreakerProbes),
		},
		RateLimit: c.RateLimit,
		Hooks:     hooks,
		Logger:    log,
	}, cxone.NewClient(hc, c.BaseURL, c.Timeout), tokens)
	return &CXone{Publisher: pub, Tokens: tokens}, nil
}

// credentials gives the token requests c's credentials, their secrets as
// they are at each request (read again from their files on SIGHUP); when
// the token endpoint refused them, it reads the secret files again first.
func credentials(c config.CXone, log *slog.Logger) cxone.CredentialsSource {
	return func(reread bool) cxone.Credentials {
		if reread {
			for name, s := range map[string]config.Secret{"cxone-client-secret": c.ClientSecret, "cxone-access-key-secret": c.AccessKeySecret} {
				if s.File() == "" {
					continue
				}
				changed, err := s.Reload()
				if err != nil {
					log.Error("the token endpoint refused the credentials and the secret file cannot be read again", "file_flag", "--"+name+"-file", "error", err.Error())
					continue
				}
				log.Warn("the token endpoint refused the credentials: secret file read again", "file_flag", "--"+name+"-file", "changed", changed)
			}
		}
		return cxone.Credentials{
			TokenURL: c.TokenURL, Style: cxone.TokenStyle(c.TokenStyle),
			ClientID: c.ClientID, ClientSecret: c.ClientSecret.Value(),
			AccessKeyID: c.AccessKeyID, AccessKeySecret: c.AccessKeySecret.Value(),
			Scope: c.Scope,
		}
	}
}

func tokenHook(f func(expiresAt int64, err error)) func(*oauth2.Token, error) {
	if f == nil {
		return nil
	}
	return func(tok *oauth2.Token, err error) {
		if err != nil {
			f(0, err)
			return
		}
		f(tok.Expiry.Unix(), nil)
	}
}

// tlsConfig trusts the CAs of caFile, or the system's when it is empty.
func tlsConfig(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--cxone-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("--cxone-ca-file: no PEM certificate found in " + caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
