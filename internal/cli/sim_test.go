package cli_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cxbridge/cxbridge/internal/certs"
	"github.com/cxbridge/cxbridge/internal/cli"
)

// lineWriter hands every complete line written to it to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	all   bytes.Buffer
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 100)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.Reset()
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- strings.TrimSuffix(line, "\n"):
		default:
		}
	}
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func TestSimCommandServesUntilCancelled(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const secret = "not-the-default-secret"
	t.Setenv("CXBRIDGE_CXONE_CLIENT_SECRET", secret)
	start, stderr, stop := startSim(t, "--latency", "1ms")

	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	resp, err := hc.Post(start.URL+"/api/v2/authorization/token", "application/x-www-form-urlencoded",
		strings.NewReader("grant_type=client_credentials&client_id=cxbridge-dev&client_secret="+secret))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("token with the secret from the environment: %d %s", resp.StatusCode, body)
	}
	resp, err = hc.Get(start.URL + "/sim/faults")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"latency":"1ms"`) {
		t.Fatalf("faults %s", body)
	}
	tr.CloseIdleConnections()
	stop()
	if out := stderr.String(); strings.Contains(out, secret) || strings.Contains(out, "access_token") {
		t.Fatalf("a secret reached the log:\n%s", out)
	}
}

func TestSimCommandBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{[]string{"--error-rate", "2"}, nil, []string{"--error-rate", "CXBRIDGE_ERROR_RATE"}},
		{nil, map[string]string{"CXBRIDGE_ERROR_RATE": "-0.5"}, []string{"--error-rate", "CXBRIDGE_ERROR_RATE"}},
		{[]string{"--latency", "-1s", "--quota", "-3", "--retry-after", "soon", "--addr", "nowhere"}, nil,
			[]string{"--latency (CXBRIDGE_LATENCY)", "--quota (CXBRIDGE_QUOTA)", "--retry-after (CXBRIDGE_RETRY_AFTER)", "--addr (CXBRIDGE_ADDR)"}},
		{[]string{"--token-ttl", "10ms", "--cxone-client-id", ""}, nil, []string{"--token-ttl", "--cxone-client-id"}},
		{[]string{"--no-such-flag"}, nil, []string{"no-such-flag"}},
		{[]string{"--error-rate", "lots"}, nil, []string{"error-rate"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			simConfigError(t, c.args, c.want)
		})
	}
}

// simConfigError runs `cxbridge sim` with args, which must stop it at
// start-up (exit 2) with every one of want in its error; it returns the error.
func simConfigError(t *testing.T, args, want []string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), append([]string{"sim"}, args...), &stdout, &stderr)
	if code != cli.ExitConfig {
		t.Fatalf("exit %d, want %d: %s", code, cli.ExitConfig, stderr.String())
	}
	for _, w := range want {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
		}
	}
	return stderr.String()
}

func TestSimCommandHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"sim", "--help"}, &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, w := range []string{"--addr", "127.0.0.1:8081", "CXBRIDGE_CXONE_CLIENT_SECRET_FILE", "cxbridge-dev-secret",
		"cxbridge-dev-key-secret", "--error-rate", "--forbid-event-type", "--token-expiry",
		"--tls-dir", "--tls-hosts", "--tls-cert-file", "--tls-key-file", "--cxone-ca-file"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("usage lacks %q", w)
		}
	}
}

func TestSimCommandListenError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	// Port 1 on a host that is not ours: the listen fails at once.
	code := cli.Run(context.Background(), []string{"sim", "--addr", "192.0.2.1:1"}, &stdout, &stderr)
	if code != cli.ExitError || !strings.Contains(stderr.String(), "listen") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

// startSim runs `cxbridge sim` with args until the returned stop is
// called, and returns its start line. stop fails the test unless the
// command exits 0.
func startSim(t *testing.T, args ...string) (start simStart, stderr *lineWriter, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = newLineWriter()
	exit := make(chan int, 1)
	go func() {
		var stdout bytes.Buffer
		exit <- cli.Run(ctx, append([]string{"sim", "--addr", "127.0.0.1:0"}, args...), &stdout, stderr)
	}()
	stop = func() {
		t.Helper()
		cancel()
		select {
		case code := <-exit:
			if code != cli.ExitOK {
				t.Fatalf("exit %d, want 0: %s", code, stderr)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("sim did not stop after ctx ended")
		}
	}
	select {
	case line := <-stderr.lines:
		if err := json.Unmarshal([]byte(line), &start); err != nil || start.URL == "" {
			cancel()
			t.Fatalf("start line %q: %v", line, err)
		}
	case code := <-exit:
		cancel()
		t.Fatalf("sim exited with %d: %s", code, stderr)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("no start line")
	}
	return start, stderr, stop
}

type simStart struct {
	Msg, URL, Addr string
	CAFile         string `json:"ca_file"`
	CertFile       string `json:"tls_cert_file"`
	Certificate    string `json:"tls_certificate"`
	Trust          string
}

// getToken asks the simulator at base for a token with the default
// credentials through tr.
func getToken(t *testing.T, tr *http.Transport, base string) (int, error) {
	t.Helper()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post(base+"/api/v2/authorization/token",
		"application/x-www-form-urlencoded",
		strings.NewReader("grant_type=client_credentials&client_id=cxbridge-dev&client_secret=cxbridge-dev-secret"))
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func trusting(t *testing.T, caFile string) *http.Transport {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
}

// --tls-dir: the simulator serves HTTPS with a certificate it generates
// into the directory, logs the CA file clients must trust, answers a client
// trusting it and refuses one that does not; a restart reuses the
// certificate, so clients keep trusting the same CA.
func TestSimCommandTLSDir(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := filepath.Join(t.TempDir(), "sim-tls") // created by the command
	start, _, stop := startSim(t, "--tls-dir", dir, "--tls-hosts", "cxone-sim,10.0.0.7")
	if !strings.HasPrefix(start.URL, "https://127.0.0.1:") {
		t.Fatalf("url %q, want https://127.0.0.1:…", start.URL)
	}
	if start.CAFile != filepath.Join(dir, "ca.pem") || start.Certificate != "generated" ||
		!strings.Contains(start.Trust, "--cxone-ca-file="+start.CAFile) {
		t.Fatalf("start line %+v: want the generated CA file and how to trust it", start)
	}
	if st, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v %v", st, err)
	}
	tr := trusting(t, start.CAFile)
	if code, err := getToken(t, tr, start.URL); err != nil || code != 200 {
		t.Fatalf("token over HTTPS trusting the CA: %d %v", code, err)
	}
	tr.CloseIdleConnections()
	// The certificate names the extra hosts.
	pair, err := tls.LoadX509KeyPair(start.CertFile, filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1", "::1", "localhost", "cxone-sim", "10.0.0.7"} {
		if err := pair.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("certificate not valid for %s: %v", h, err)
		}
	}
	plain := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	_, err = getToken(t, plain, start.URL)
	plain.CloseIdleConnections()
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("a client without the CA: %v, want an unknown-authority error", err)
	}
	stop()
	ca1, _ := os.ReadFile(start.CAFile)

	start, _, stop = startSim(t, "--tls-dir", dir, "--tls-hosts", "cxone-sim,10.0.0.7")
	ca2, _ := os.ReadFile(start.CAFile)
	if start.Certificate != "reused" || !bytes.Equal(ca1, ca2) {
		t.Fatalf("restart: certificate %q, CA unchanged %v; want the certificate reused", start.Certificate, bytes.Equal(ca1, ca2))
	}
	tr = trusting(t, start.CAFile)
	if code, err := getToken(t, tr, start.URL); err != nil || code != 200 {
		t.Fatalf("token after the restart: %d %v", code, err)
	}
	tr.CloseIdleConnections()
	stop()

	// A host the certificate lacks: a new one is generated.
	start, _, stop = startSim(t, "--tls-dir", dir, "--tls-hosts", "other-host")
	if start.Certificate != "generated" {
		t.Fatalf("a new host: certificate %q, want generated", start.Certificate)
	}
	stop()
}

// --tls-cert-file and --tls-key-file: the simulator serves the given
// certificate.
func TestSimCommandTLSCertFile(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b, err := certs.New(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f, err := b.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start, _, stop := startSim(t, "--tls-cert-file", f.Cert, "--tls-key-file", f.Key)
	defer stop()
	if !strings.HasPrefix(start.URL, "https://") || start.Certificate != "given" || start.CAFile != "" {
		t.Fatalf("start line %+v", start)
	}
	tr := trusting(t, f.CA)
	defer tr.CloseIdleConnections()
	if code, err := getToken(t, tr, start.URL); err != nil || code != 200 {
		t.Fatalf("token: %d %v", code, err)
	}
}

func TestSimCommandBadTLSFlags(t *testing.T) {
	dir := t.TempDir()
	b, err := certs.New(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f, err := b.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.New(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := os.WriteFile(otherKey, other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--tls-cert-file", f.Cert}, []string{"--tls-key-file (CXBRIDGE_TLS_KEY_FILE): must be set with --tls-cert-file"}},
		{[]string{"--tls-key-file", f.Key}, []string{"--tls-cert-file (CXBRIDGE_TLS_CERT_FILE): must be set with --tls-key-file"}},
		{[]string{"--tls-cert-file", f.Cert, "--tls-key-file", f.Key, "--tls-dir", dir}, []string{"--tls-dir (CXBRIDGE_TLS_DIR)"}},
		{[]string{"--tls-cert-file", filepath.Join(dir, "missing.pem"), "--tls-key-file", f.Key}, []string{"--tls-cert-file (CXBRIDGE_TLS_CERT_FILE): cannot load", "missing.pem"}},
		{[]string{"--tls-cert-file", f.Cert, "--tls-key-file", otherKey}, []string{"--tls-cert-file (CXBRIDGE_TLS_CERT_FILE): cannot load", "private key does not match"}},
		{[]string{"--tls-dir", f.CA}, []string{"--tls-dir (CXBRIDGE_TLS_DIR)", "is not a directory"}},
		{[]string{"--tls-hosts", "a"}, []string{"--tls-hosts (CXBRIDGE_TLS_HOSTS): applies to a generated certificate"}},
		{[]string{"--tls-dir", dir, "--tls-hosts", "a,,b"}, []string{"--tls-hosts (CXBRIDGE_TLS_HOSTS): must be host names"}},
		// several bad settings: one line each
		{[]string{"--tls-key-file", f.Key, "--error-rate", "2", "--tls-hosts", "x"}, []string{"--tls-cert-file", "--error-rate", "--tls-hosts"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			if strings.Contains(simConfigError(t, c.args, c.want), "PRIVATE KEY") {
				t.Fatal("key material in the error")
			}
		})
	}
}
