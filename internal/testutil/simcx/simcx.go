// Package simcx connects tests to the CXone simulator (package sim): a
// token cache for its default credentials. It is test code: the binary does
// not import it (cmd/cxbridge's TestProductDeps).
package simcx

import (
	"context"
	"net/http"
	"testing"

	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// Tokens returns a token cache configured by cfg that fetches the
// simulator's default client credentials (JSON style, scope event:publish)
// from baseURL through hc. The test waits for its background refresh when
// it ends.
func Tokens(tb testing.TB, hc *http.Client, baseURL string, cfg cxone.TokensConfig) *cxone.Tokens {
	tb.Helper()
	fetcher, err := cxone.NewFetcher(cxone.Credentials{
		TokenURL: baseURL + "/api/v2/authorization/token", Style: cxone.StyleJSON,
		ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret, Scope: "event:publish",
	}, hc)
	if err != nil {
		tb.Fatal(err)
	}
	tokens := cxone.NewTokens(fetcher, cfg)
	tb.Cleanup(func() { _ = tokens.Wait(context.Background()) })
	return tokens
}
