package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/certs"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/devstack"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

const (
	saslUser     = "bridge"
	saslPassword = "Pr0cess-s3cret"
)

// newSecureEnv is an embedded broker requiring SASL SCRAM-SHA-512 (over
// TLS when tlsOn) and a simulator; files are the broker certificate's CA.
func newSecureEnv(t *testing.T, tlsOn bool) (*env, certs.Files) {
	t.Helper()
	cfg := devstack.BrokerConfig{Addr: "127.0.0.1:0", Partitions: 3, Topics: []string{"cxone.events", "cxone.events.dlq"},
		MinSessionTimeout: 500 * time.Millisecond,
		SASLUsers:         []devstack.SASLUser{{Mechanism: "scram-sha-512", User: saslUser, Password: saslPassword}}}
	var files certs.Files
	if tlsOn {
		b, err := certs.New(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if files, err = b.WriteFiles(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		cfg.TLS = b.ServerConfig()
	}
	b, err := devstack.StartBroker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, url, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &env{broker: testkafka.Use(t, b), sim: s, simURL: url, input: "cxone.events", dlq: "cxone.events.dlq", group: "cxbridge-proc"}, files
}

// A wrong SASL password stops `cxbridge run` within seconds with exit
// code 1 and a line naming the settings to check; no password is printed.
func TestWrongSASLPasswordStopsStartup(t *testing.T) {
	processTest(t)
	const wrong = "Wr0ng-pr0cess-s3cret"
	e, _ := newSecureEnv(t, false)
	t.Setenv("CXBRIDGE_KAFKA_SASL_PASSWORD", wrong)
	start := time.Now()
	w := e.startWorker(t, "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-username", saslUser)
	code := w.waitExit(t, 10*time.Second)
	took := time.Since(start)
	out := w.stderr.String()
	if code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", code, testutil.Tail(out, 4000))
	}
	if took > 5*time.Second {
		t.Errorf("took %v to exit", took)
	}
	var last string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		last = l
	}
	for _, want := range []string{"cxbridge run: kafka: SASL authentication failed", `user "bridge"`, "scram-sha-512",
		"--kafka-sasl-username", "--kafka-sasl-password", "CXBRIDGE_KAFKA_SASL_PASSWORD"} {
		if !strings.Contains(last, want) {
			t.Errorf("the last line of stderr lacks %q: %s", want, last)
		}
	}
	for _, secret := range []string{wrong, saslPassword} {
		if strings.Contains(out, secret) {
			t.Errorf("stderr holds a password:\n%s", out)
		}
	}
	t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), last)
}

// The real binary authenticates with SCRAM-SHA-512 over TLS, the password
// from CXBRIDGE_KAFKA_SASL_PASSWORD_FILE and the CA from
// --kafka-tls-ca-file, and delivers every record; SIGTERM exits 0.
func TestSASLOverTLSDelivers(t *testing.T) {
	processTest(t)
	e, files := newSecureEnv(t, true)
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(saslPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CXBRIDGE_KAFKA_SASL_PASSWORD_FILE", pwFile)
	k := config.Kafka{ClientID: "proc-test", TLS: true, TLSCAFile: files.CA, SASLMechanism: "scram-sha-512",
		SASLUsername: saslUser, SASLPassword: config.NewSecret(saslPassword)}
	tr, err := k.Transport()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	const n = 200
	var st produce.Stats
	if err := produce.Run(context.Background(), produce.Config{Brokers: e.broker.Addrs, Topic: e.input, Transport: tr,
		Count: n, Keys: 50, Size: 200, Seed: 11}, &st, nil); err != nil {
		t.Fatal(err)
	}
	w := e.startWorker(t, "--kafka-tls", "--kafka-tls-ca-file", files.CA,
		"--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-username", saslUser)
	testutil.WaitFor(t, 60*time.Second, "every record accepted", func() bool { return e.sim.Stats().Distinct >= n })
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.waitExit(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; stderr:\n%s", code, testutil.Tail(w.stderr.String(), 4000))
	}
	if strings.Contains(w.stderr.String(), saslPassword) {
		t.Fatal("stderr holds the password")
	}
}
