package itest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// realListeners returns scripts/kafka.sh's SASL and TLS listeners of the
// real broker, skipping the test without them: the embedded broker's
// security is tested by the TestKafka* tests of kafkasec_test.go.
func realListeners(t *testing.T) map[string]string {
	t.Helper()
	env := testkafka.Env()
	if env["KAFKA_SASL_BROKERS"] == "" || env["KAFKA_TLS_BROKERS"] == "" || env["KAFKA_SASL_TLS_BROKERS"] == "" {
		t.Skip("needs a real broker with SASL and TLS listeners (make test-kafka)")
	}
	return env
}

// On Apache Kafka, the worker authenticates with SASL PLAIN and
// SCRAM-SHA-256/512, over plaintext and over TLS, and with TLS alone
// trusting the project's CA (--kafka-tls-ca-file), and delivers end to
// end: good records accepted, bad ones in the DLQ topic, every offset
// committed. The test's own producer and checks use the plaintext listener.
func TestRealBrokerSecurityEndToEnd(t *testing.T) {
	env := realListeners(t)
	for _, tc := range []struct {
		name, brokers, mechanism string
		tls                      bool
	}{
		{"sasl-plain", env["KAFKA_SASL_BROKERS"], "plain", false},
		{"sasl-scram-sha-256", env["KAFKA_SASL_BROKERS"], "scram-sha-256", false},
		{"sasl-scram-sha-512", env["KAFKA_SASL_BROKERS"], "scram-sha-512", false},
		{"tls", env["KAFKA_TLS_BROKERS"], "", true},
		{"tls+sasl-scram-sha-512", env["KAFKA_SASL_TLS_BROKERS"], "scram-sha-512", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, 3, sim.Config{})
			logs := &testutil.SyncBuffer{}
			s.logs = logs
			const n = 60
			bad, want := badRecords(1)
			s.write(mix(goodRecords(n, 20, 41), bad, 42))
			r := s.startWorker(func(st *bridge.Settings) {
				k := &st.Kafka
				k.Brokers, k.TLS = tc.brokers, tc.tls
				if tc.tls {
					k.TLSCAFile = env["KAFKA_TLS_CA"]
				}
				if tc.mechanism != "" {
					k.SASLMechanism, k.SASLUsername, k.SASLPassword = tc.mechanism, env["KAFKA_SASL_USER"], config.NewSecret(env["KAFKA_SASL_PASSWORD"])
				}
			})
			s.waitAccepted(n, 30*time.Second)
			s.waitCommitted(30 * time.Second)
			r.stop(t)
			got := s.dlqByKey(want)
			if len(got) != len(want) {
				t.Errorf("%d records in the DLQ, want %d", len(got), len(want))
			}
			if strings.Contains(logs.String(), env["KAFKA_SASL_PASSWORD"]) {
				t.Error("the logs hold the SASL password")
			}
		})
	}
}

// On Apache Kafka, a wrong SASL password or a broker certificate the
// worker does not trust end Run at once with an error naming the settings
// to check; nothing is consumed.
func TestRealBrokerRefusesBadSecurity(t *testing.T) {
	env := realListeners(t)
	for _, tc := range []struct {
		name   string
		mutate func(k *config.Kafka)
		want   []string
	}{
		{"scram-sha-512/wrong-password", func(k *config.Kafka) {
			k.Brokers, k.SASLMechanism, k.SASLUsername, k.SASLPassword = env["KAFKA_SASL_BROKERS"], "scram-sha-512", env["KAFKA_SASL_USER"], config.NewSecret(badPassword)
		}, []string{"SASL authentication failed", "--kafka-sasl-password"}},
		{"plain/unknown-user", func(k *config.Kafka) {
			k.Brokers, k.SASLMechanism, k.SASLUsername, k.SASLPassword = env["KAFKA_SASL_BROKERS"], "plain", "nobody", config.NewSecret(env["KAFKA_SASL_PASSWORD"])
		}, []string{"SASL authentication failed", `user "nobody"`}},
		{"tls/untrusted-certificate", func(k *config.Kafka) {
			k.Brokers, k.TLS = env["KAFKA_TLS_BROKERS"], true
		}, []string{"not trusted", "--kafka-tls-ca-file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, 3, sim.Config{})
			logs := &testutil.SyncBuffer{}
			s.logs = logs
			s.write(goodRecords(5, 5, 3))
			start := time.Now()
			r := s.startWorker(func(st *bridge.Settings) { tc.mutate(&st.Kafka) })
			err := waitRun(t, r, 10*time.Second)
			var setup *consumer.KafkaSetupError
			if !errors.As(err, &setup) {
				t.Fatalf("Run returned %v (%T), want a *consumer.KafkaSetupError", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error()+logs.String(), badPassword) || strings.Contains(err.Error()+logs.String(), env["KAFKA_SASL_PASSWORD"]) {
				t.Error("a password shows in the error or the logs")
			}
			if st := s.sim.Stats(); st.Distinct != 0 {
				t.Errorf("the simulator accepted %d events", st.Distinct)
			}
			if tc.name != "tls/untrusted-certificate" && !errors.Is(err, kafka.SASLAuthenticationFailed) {
				t.Errorf("error does not wrap kafka.SASLAuthenticationFailed: %v", err)
			}
			t.Logf("Run returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}
