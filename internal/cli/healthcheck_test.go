package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// healthcheck exits 0 for a 200 and 1 for anything else or no answer.
func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer srv.Close()
	run := func() (int, string) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), []string{"healthcheck", "--url", srv.URL + "/healthz"}, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run(); code != ExitOK || !strings.Contains(out, "healthy") {
		t.Fatalf("code %d: %s", code, out)
	}
	status = http.StatusServiceUnavailable
	if code, out := run(); code != ExitError || !strings.Contains(out, "503") {
		t.Fatalf("code %d: %s", code, out)
	}
	srv.Close()
	if code, _ := run(); code != ExitError {
		t.Fatalf("no server: code %d", code)
	}
}
