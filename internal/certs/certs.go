// Package certs generates a private CA and a server certificate signed by
// it, for serving TLS locally: the CXone simulator over HTTPS and the
// embedded broker with TLS, in `cxbridge dev`, `cxbridge sim` and the tests.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Bundle is a CA and one server certificate it signed.
type Bundle struct {
	CAPEM   []byte // the CA certificate, PEM: what clients trust
	CertPEM []byte // the server certificate, PEM
	KeyPEM  []byte // the server key, PEM (PKCS #8)
	Cert    tls.Certificate
	Pool    *x509.CertPool // holds the CA
}

// New returns a fresh CA and a server certificate for hosts (IP addresses
// or DNS names), valid from an hour ago for validFor.
func New(validFor time.Duration, hosts ...string) (*Bundle, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	from := time.Now().Add(-time.Hour)
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "cxbridge local CA"},
		NotBefore:             from,
		NotAfter:              from.Add(validFor + time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("certs: CA: %w", err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    from,
		NotAfter:     from.Add(validFor + time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("certs: server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	b := &Bundle{
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Pool:    x509.NewCertPool(),
	}
	b.Pool.AddCert(ca)
	if b.Cert, err = tls.X509KeyPair(b.CertPEM, b.KeyPEM); err != nil {
		return nil, err
	}
	return b, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// ServerConfig is a TLS configuration serving the certificate.
func (b *Bundle) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{b.Cert}, MinVersion: tls.VersionTLS12}
}

// ClientConfig is a TLS configuration trusting only the CA.
func (b *Bundle) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: b.Pool, MinVersion: tls.VersionTLS12}
}

// Files are where WriteFiles put the PEM files.
type Files struct{ CA, Cert, Key string }

// WriteFiles writes ca.pem, cert.pem and key.pem (mode 0600) into dir.
func (b *Bundle) WriteFiles(dir string) (Files, error) {
	f := Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.CA, b.CAPEM, 0o644}, {f.Cert, b.CertPEM, 0o644}, {f.Key, b.KeyPEM, 0o600}} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return Files{}, fmt.Errorf("certs: %w", err)
		}
	}
	return f, nil
}
