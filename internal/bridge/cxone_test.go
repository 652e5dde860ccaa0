package bridge

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/delivery"
	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// CXone over HTTPS: the publisher trusts the simulator's certificate
// through --cxone-ca-file, and refuses it without (and never dead-letters
// for that: a TLS failure is a network error, retried).
func TestCXoneTLSWithCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(sim.New(sim.Config{}).Handler())
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	settings := func(caFile string) config.CXone {
		c := config.CXone{BaseURL: srv.URL, TokenStyle: "json", ClientID: sim.DefaultClientID,
			ClientSecret: config.NewSecret(sim.DefaultClientSecret), Scope: "event:publish", Timeout: 5 * time.Second,
			CAFile: caFile, MaxConns: 8, TokenRefreshBefore: time.Minute, MaxRetries: 0, RetryBackoff: 10 * time.Millisecond,
			MaxBackoff: 50 * time.Millisecond, BreakerFailures: 100, BreakerOpenTimeout: time.Second, BreakerProbes: 1}
		var p config.Problems
		c.Validate(&p)
		if err := p.Err(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ev := &event.Event{EventType: "custom.user.action", Source: "svc", Timestamp: "2026-11-28T10:00:00Z",
		CorrelationID: "tls-1", TraceID: "trace-1", Data: []byte(`{}`)}

	pub, err := NewCXone(settings(ca), nil, delivery.Hooks{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out := pub.Publish(context.Background(), ev); out.Result != delivery.Accepted {
		t.Fatalf("with the CA file: %s %v", out.Label(), out.Err)
	}

	untrusting, err := NewCXone(settings(""), nil, delivery.Hooks{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := untrusting.Publish(ctx, ev)
	if out.Result == delivery.Accepted || out.DeadLetter() {
		t.Fatalf("without the CA file: %s", out.Label())
	}
	var uerr x509.UnknownAuthorityError
	if !errors.As(out.Err, &uerr) {
		t.Fatalf("want an unknown-authority error, got %v", out.Err)
	}

	if _, err := NewCXone(settings(filepath.Join(t.TempDir(), "missing.pem")), nil, delivery.Hooks{}, nil); err == nil {
		t.Fatal("a missing CA file must fail start-up")
	}
}
