package itest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/certs"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/devstack"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

const (
	secUser     = "bridge"
	secPassword = "s3cret-Pa55word"
	badPassword = "wr0ng-Pa55word"
)

// secBroker is what the embedded broker requires.
type secBroker struct {
	tls       bool
	certHosts []string // the broker certificate's hosts; default 127.0.0.1, localhost
	users     []devstack.SASLUser
	late      bool // not started by newSecStack: call startBroker
}

// secStack is a stack whose broker requires TLS and/or SASL; its own
// client (producing, reading offsets) authenticates with kafka.
type secStack struct {
	*stack
	cfg    devstack.BrokerConfig
	kafka  config.Kafka // the client settings that work: SASL of the first user, TLS with the CA file
	tr     *kafka.Transport
	logBuf *testutil.SyncBuffer
}

// checkNoLeaks makes t fail if goroutines started during the test outlive
// it; call it first, so that it runs after every other cleanup.
func checkNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func newSecStack(t *testing.T, b secBroker) *secStack {
	t.Helper()
	// The address is chosen first, so that a late broker has one too.
	addr, err := testutil.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	st := &secStack{logBuf: &testutil.SyncBuffer{}, cfg: devstack.BrokerConfig{Addr: addr, Partitions: 3, Topics: []string{inputTopic, dlqTopic},
		MinSessionTimeout: 500 * time.Millisecond, SASLUsers: b.users}}
	st.kafka.Brokers, st.kafka.ClientID = addr, "itest"
	if b.tls {
		bundle, err := certs.New(time.Hour, b.certHosts...)
		if err != nil {
			t.Fatal(err)
		}
		files, err := bundle.WriteFiles(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		st.cfg.TLS = bundle.ServerConfig()
		st.kafka.TLS, st.kafka.TLSCAFile = true, files.CA
	}
	if len(b.users) > 0 {
		st.kafka.SASLMechanism, st.kafka.SASLUsername = strings.ToLower(b.users[0].Mechanism), b.users[0].User
		st.kafka.SASLPassword = config.NewSecret(b.users[0].Password)
	}
	if st.tr, err = st.kafka.Transport(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.tr.CloseIdleConnections)
	s := sim.New(sim.Config{})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	st.stack = &stack{t: t, broker: testkafka.Use(t, &devstack.Broker{Addrs: []string{addr}}), sim: s, simURL: srv.URL,
		input: inputTopic, dlqName: dlqTopic, group: groupID,
		logs: io.MultiWriter(st.logBuf, verboseLogs())}
	st.client = &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second, Transport: st.tr}
	if !b.late {
		st.startBroker()
	}
	return st
}

// startBroker starts the broker on the stack's address.
func (s *secStack) startBroker() {
	s.t.Helper()
	b, err := devstack.StartBroker(s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(b.Close)
	s.broker = testkafka.Use(s.t, b)
}

func verboseLogs() io.Writer {
	if os.Getenv("ITEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// withKafka gives the worker the stack's working client settings, then
// lets mutate change them.
func (s *secStack) withKafka(mutate func(k *config.Kafka)) func(*bridge.Settings) {
	return func(st *bridge.Settings) {
		k := &st.Kafka
		k.TLS, k.TLSCAFile = s.kafka.TLS, s.kafka.TLSCAFile
		k.SASLMechanism, k.SASLUsername, k.SASLPassword = s.kafka.SASLMechanism, s.kafka.SASLUsername, s.kafka.SASLPassword
		if mutate != nil {
			mutate(k)
		}
		var p config.Problems
		k.Validate(&p)
		if err := p.Err(); err != nil {
			s.t.Fatal(err)
		}
	}
}

// writeSecure produces msgs through the authenticated transport.
func (s *secStack) writeSecure(msgs []kafka.Message) {
	s.t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(s.kafka.BrokerList()...), Topic: inputTopic, Balancer: &kafka.Hash{}, Transport: s.tr,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		s.t.Fatalf("produce: %v", err)
	}
}

// dlqSecure reads the DLQ topic through the authenticated transport:
// key → reason.
func (s *secStack) dlqSecure() map[string]string {
	s.t.Helper()
	out := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := dlq.Scan(ctx, dlq.ReaderConfig{Brokers: s.kafka.BrokerList(), Topic: dlqTopic, Transport: s.tr}, func(m kafka.Message) error {
		e, ok, err := dlq.Parse(m.Headers)
		if err != nil || !ok {
			s.t.Errorf("DLQ record %s without valid headers: %v", m.Key, err)
		}
		out[string(m.Key)] = string(e.Reason)
		return nil
	})
	if err != nil {
		s.t.Fatalf("reading the DLQ: %v", err)
	}
	return out
}

// refusesAnonymous checks that the broker answers no metadata request
// without the TLS and SASL settings: it does require them.
func (s *secStack) refusesAnonymous() {
	s.t.Helper()
	tr := &kafka.Transport{DialTimeout: 2 * time.Second}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(s.kafka.BrokerList()...), Timeout: 3 * time.Second, Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{inputTopic}}); err == nil {
		s.t.Fatal("the broker answers a metadata request without TLS or SASL: it requires neither")
	}
}

// waitRun waits up to d for r's Run to return.
func waitRun(t *testing.T, r *running, d time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(d):
		t.Fatalf("Run did not return within %v", d)
		return nil
	}
}

// The worker authenticates with SASL PLAIN, SCRAM-SHA-256/512 and/or TLS
// (the CA from --kafka-tls-ca-file, or --kafka-tls-skip-verify) to a
// broker that requires them, and delivers every record end to end: good
// ones accepted by the simulator, bad ones in the DLQ topic, every offset
// committed.
func TestKafkaSecurityEndToEnd(t *testing.T) {
	scram512 := devstack.SASLUser{Mechanism: "scram-sha-512", User: secUser, Password: secPassword}
	for _, tc := range []struct {
		name   string
		b      secBroker
		mutate func(*config.Kafka)
	}{
		{"sasl-plain", secBroker{users: []devstack.SASLUser{{Mechanism: "plain", User: secUser, Password: secPassword}}}, nil},
		{"sasl-scram-sha-512", secBroker{users: []devstack.SASLUser{scram512}}, nil},
		{"tls", secBroker{tls: true}, nil},
		{"tls-skip-verify", secBroker{tls: true}, func(k *config.Kafka) { k.TLSCAFile, k.TLSSkipVerify = "", true }},
		{"tls+sasl-scram-sha-256", secBroker{tls: true, users: []devstack.SASLUser{{Mechanism: "scram-sha-256", User: secUser, Password: secPassword}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			s := newSecStack(t, tc.b)
			s.refusesAnonymous()
			const n = 60
			bad, want := badRecords(1)
			s.writeSecure(mix(goodRecords(n, 20, 41), bad, 42))
			r := s.startWorker(s.withKafka(tc.mutate))
			s.waitAccepted(n, 30*time.Second)
			o := s.waitCommitted(30 * time.Second)
			if consumed, _ := r.metric("cxbridge_records_consumed_total", ""); consumed < float64(n+len(bad)) {
				t.Errorf("consumed %v records, want %d", consumed, n+len(bad))
			}
			r.stop(t)
			// The DLQ writer authenticated too: every bad record is in the
			// DLQ topic, read back through the same TLS and SASL settings.
			inDLQ := s.dlqSecure()
			if len(inDLQ) != len(want) {
				t.Errorf("%d records in the DLQ, want %d", len(inDLQ), len(want))
			}
			for key, reason := range want {
				if inDLQ[key] != reason {
					t.Errorf("DLQ record %s: reason %q, want %q", key, inDLQ[key], reason)
				}
			}
			if logs := s.logBuf.String(); strings.Contains(logs, secPassword) {
				t.Errorf("the logs hold the SASL password:\n%s", logs)
			}
			t.Logf("%d records accepted, %d dead-lettered, offsets committed %v", s.sim.Stats().Distinct, len(inDLQ), o.Committed)
		})
	}
}

// Wrong SASL credentials end Run at once with an error naming the settings
// to check, holding no password; nothing is consumed.
func TestKafkaSASLWrongCredentials(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broker string // mechanism the broker's user has
		mutate func(k *config.Kafka)
		user   string
	}{
		{"plain/wrong-password", "plain", func(k *config.Kafka) { k.SASLPassword = config.NewSecret(badPassword) }, secUser},
		{"scram-sha-512/wrong-password", "scram-sha-512", func(k *config.Kafka) { k.SASLPassword = config.NewSecret(badPassword) }, secUser},
		{"scram-sha-512/unknown-user", "scram-sha-512", func(k *config.Kafka) { k.SASLUsername = "nobody" }, "nobody"},
		{"scram-sha-512/user-of-another-mechanism", "scram-sha-256", func(k *config.Kafka) { k.SASLMechanism = "scram-sha-512" }, secUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			s := newSecStack(t, secBroker{users: []devstack.SASLUser{{Mechanism: tc.broker, User: secUser, Password: secPassword}}})
			s.writeSecure(goodRecords(5, 5, 3))
			start := time.Now()
			r := s.startWorker(s.withKafka(tc.mutate))
			err := waitRun(t, r, 5*time.Second)
			took := time.Since(start)
			var setup *consumer.KafkaSetupError
			if !errors.As(err, &setup) {
				t.Fatalf("Run returned %v (%T), want a *consumer.KafkaSetupError", err, err)
			}
			if !errors.Is(err, kafka.SASLAuthenticationFailed) {
				t.Errorf("error does not wrap kafka.SASLAuthenticationFailed: %v", err)
			}
			msg := err.Error()
			for _, want := range []string{"SASL authentication failed", `user "` + tc.user + `"`, "--kafka-sasl-username", "--kafka-sasl-password",
				"CXBRIDGE_KAFKA_SASL_PASSWORD", "--kafka-sasl-mechanism"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			logs := s.logBuf.String()
			for _, secret := range []string{secPassword, badPassword} {
				if strings.Contains(msg, secret) || strings.Contains(logs, secret) {
					t.Errorf("a password shows in the error or the logs: %q\n%s", msg, logs)
				}
			}
			if st := s.sim.Stats(); st.Distinct != 0 {
				t.Errorf("the simulator accepted %d events", st.Distinct)
			}
			if consumed, _ := r.metric("cxbridge_records_consumed_total", ""); consumed != 0 {
				t.Errorf("%v records consumed", consumed)
			}
			t.Logf("Run returned after %v: %v", took.Round(time.Millisecond), msg)
		})
	}
}

// TLS problems end Run at once (untrusted certificate) or after a few
// attempts (the broker closing every connection at the same step), with an
// error naming the settings to check.
func TestKafkaTLSMisconfigured(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      secBroker
		mutate func(k *config.Kafka)
		want   []string
		d      time.Duration
	}{
		{"no-ca-file", secBroker{tls: true}, func(k *config.Kafka) { k.TLSCAFile = "" },
			[]string{"TLS certificate of broker", "not trusted", "--kafka-tls-ca-file"}, 5 * time.Second},
		{"wrong-host-name", secBroker{tls: true, certHosts: []string{"localhost"}}, nil,
			[]string{"not valid for that host name", "127.0.0.1", "--kafka-brokers"}, 5 * time.Second},
		{"plaintext-client", secBroker{tls: true}, func(k *config.Kafka) { k.TLS, k.TLSCAFile = false, "" },
			[]string{"closed the connection before answering the first request", "on 3 attempts", "requires TLS", "--kafka-tls"}, 10 * time.Second},
		{"plaintext-sasl-client", secBroker{tls: true, users: []devstack.SASLUser{{Mechanism: "plain", User: secUser, Password: secPassword}}},
			func(k *config.Kafka) { k.TLS, k.TLSCAFile = false, "" },
			[]string{"closed the connection before answering the first request", "requires TLS", "--kafka-tls"}, 10 * time.Second},
		{"sasl-required-not-configured", secBroker{users: []devstack.SASLUser{{Mechanism: "plain", User: secUser, Password: secPassword}}},
			func(k *config.Kafka) { k.SASLMechanism, k.SASLUsername, k.SASLPassword = "", "", config.Secret{} },
			[]string{"require SASL", "--kafka-sasl-mechanism", "--kafka-sasl-username", "--kafka-sasl-password"}, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			s := newSecStack(t, tc.b)
			start := time.Now()
			r := s.startWorker(s.withKafka(tc.mutate))
			err := waitRun(t, r, tc.d)
			var setup *consumer.KafkaSetupError
			if !errors.As(err, &setup) {
				t.Fatalf("Run returned %v (%T), want a *consumer.KafkaSetupError", err, err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), secPassword) || strings.Contains(s.logBuf.String(), secPassword) {
				t.Error("the password shows in the error or the logs")
			}
			t.Logf("Run returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

// A broker that is not up yet is waited for (the consumer logs every attempt),
// and the reason on /readyz; once it listens (requiring SCRAM-SHA-512 over
// TLS), the same worker authenticates and delivers.
func TestKafkaSecureBrokerComesUpLate(t *testing.T) {
	checkNoLeaks(t)
	s := newSecStack(t, secBroker{tls: true, late: true,
		users: []devstack.SASLUser{{Mechanism: "scram-sha-512", User: secUser, Password: secPassword}}})
	r := s.startWorker(s.withKafka(nil))
	testutil.WaitFor(t, 10*time.Second, "two retry log lines", func() bool {
		return strings.Count(s.logBuf.String(), "joining the consumer group failed; retrying") >= 2
	}, s.logBuf.String)
	rec := httptest.NewRecorder()
	r.w.Admin().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code == http.StatusOK || !strings.Contains(rec.Body.String(), "Kafka brokers not reachable") {
		t.Errorf("/readyz while the broker is down: %d %s", rec.Code, rec.Body)
	}
	select {
	case <-r.done:
		t.Fatalf("Run returned while the broker was down: %v", r.err)
	default:
	}
	s.startBroker()
	const n = 30
	s.writeSecure(goodRecords(n, 10, 5))
	s.waitAccepted(n, 30*time.Second)
	s.waitCommitted(30 * time.Second)
	r.stop(t)
}

// A TLS client on a plaintext listener: Kafka reads the ClientHello's first
// bytes as the size of a request far over socket.request.max.bytes and
// closes the connection without a byte (kfake instead waits for the
// 369 MB, so the handshake only times out: a listener doing what Kafka
// does stands in for it). Start-up fails after a few attempts with an
// error naming --kafka-tls.
func TestKafkaTLSClientOnPlaintextListener(t *testing.T) {
	checkNoLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted sync.WaitGroup
	accepted.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.ReadFull(c, make([]byte, 4)) // the "size": 0x160301xx
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); accepted.Wait() })
	s := newSecStack(t, secBroker{late: true})
	s.broker.Addrs = []string{ln.Addr().String()}
	r := s.startWorker(s.withKafka(func(k *config.Kafka) { k.TLS = true }))
	err = waitRun(t, r, 10*time.Second)
	var setup *consumer.KafkaSetupError
	if !errors.As(err, &setup) {
		t.Fatalf("Run returned %v (%T), want a *consumer.KafkaSetupError", err, err)
	}
	for _, want := range []string{"closed the connection during the TLS handshake", "on 3 attempts", "--kafka-tls"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Logf("Run returned: %v", err)
}
