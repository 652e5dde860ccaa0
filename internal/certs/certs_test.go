package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"
	"time"
)

// A client trusting the CA completes a handshake with the server
// certificate; a client trusting only the system's roots refuses it; the
// written files hold the same material.
func TestBundleHandshake(t *testing.T) {
	b, err := New(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), b.ClientConfig())
	if err != nil {
		t.Fatalf("trusting the CA: %v", err)
	}
	c.Close()
	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS12})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("without the CA: err %v, want an unknown-authority error", err)
	}

	f, err := b.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(f.CA)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("ca.pem holds no certificate")
	}
	if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(f.Key); st.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode %v, want 0600", st.Mode().Perm())
	}
}
