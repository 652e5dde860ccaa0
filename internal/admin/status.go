package admin

import (
	_ "embed"
	"encoding/json"
	"net/http"
)

//go:embed status.html
var statusPage []byte

// StatusHandlers returns the status page (to serve at GET /) and its data
// (at GET /status.json, from snapshot). The page is self-contained: no external
// assets; every two seconds it polls /status.json and /history.json (a
// History), whose last 10 minutes it draws as inline SVG charts.
func StatusHandlers(snapshot func() any) (page, data http.Handler) {
	page = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		_, _ = w.Write(statusPage)
	})
	data = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(snapshot())
	})
	return page, data
}
