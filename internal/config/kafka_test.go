package config

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func parseKafkaWorker(t *testing.T, args ...string) (Kafka, Worker, error) {
	t.Helper()
	var k Kafka
	var w Worker
	fs := NewFlagSet("test")
	k.Register(fs)
	w.Register(fs)
	if err := fs.Parse(args, &bytes.Buffer{}); err != nil {
		return k, w, err
	}
	var p Problems
	k.Validate(&p)
	w.Validate(&p, &k)
	return k, w, p.Err()
}

// The defaults are the documented ones and valid as they are.
func TestKafkaWorkerDefaults(t *testing.T) {
	k, w, err := parseKafkaWorker(t)
	if err != nil {
		t.Fatal(err)
	}
	if k.Brokers != "localhost:9092" || k.InputTopic != "cxone.events" || k.GroupID != "cxbridge" || k.DLQTopic != "cxone.events.dlq" ||
		k.StartOffsetValue() != kafka.FirstOffset || w.Ordering != "key" || w.MaxInFlight != 256 || w.ShutdownTimeout != 30*time.Second ||
		w.AdminAddr != ":8090" {
		t.Fatalf("defaults %+v %+v", k, w)
	}
	// The group's timings (see Kafka's field docs for the reasons).
	if k.SessionTimeout != 6*time.Second || k.RebalanceTimeout != 6*time.Second || k.HeartbeatInterval != time.Second ||
		w.DrainTimeout != 3*time.Second {
		t.Fatalf("group timings: session %v, rebalance %v, heartbeat %v, drain %v; want 6s, 6s, 1s, 3s",
			k.SessionTimeout, k.RebalanceTimeout, k.HeartbeatInterval, w.DrainTimeout)
	}
	if got := (&Kafka{Brokers: " a:1, b:2 ,"}).BrokerList(); len(got) != 2 || got[1] != "b:2" {
		t.Fatalf("BrokerList = %q", got)
	}
}

// Each bad Kafka or worker setting gives a line naming its flag and variable.
func TestKafkaWorkerValidation(t *testing.T) {
	cases := []struct {
		name string
		args []string
		flag string
	}{
		{"broker without port", []string{"--kafka-brokers", "kafka1"}, "kafka-brokers"},
		{"same dlq and input", []string{"--kafka-dlq-topic", "cxone.events"}, "kafka-dlq-topic"},
		{"dlq among the input topics", []string{"--kafka-input-topic", "orders,cxone.events.dlq"}, "kafka-dlq-topic"},
		{"empty input topic in the list", []string{"--kafka-input-topic", "orders,,tickets"}, "kafka-input-topic"},
		{"trailing comma in the input topics", []string{"--kafka-input-topic", "orders,"}, "kafka-input-topic"},
		{"input topic twice", []string{"--kafka-input-topic", "orders, tickets,orders"}, "kafka-input-topic"},
		{"bad start offset", []string{"--kafka-start-offset", "middle"}, "kafka-start-offset"},
		{"cert without key", []string{"--kafka-tls-cert-file", "c.pem"}, "kafka-tls-key-file"},
		{"unknown sasl", []string{"--kafka-sasl-mechanism", "gssapi"}, "kafka-sasl-mechanism"},
		{"sasl without user", []string{"--kafka-sasl-mechanism", "plain"}, "kafka-sasl-username"},
		{"sasl without password", []string{"--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-username", "u"}, "kafka-sasl-password"},
		{"heartbeat over session", []string{"--kafka-heartbeat-interval", "40s"}, "kafka-heartbeat-interval"},
		{"fetch smaller than a record", []string{"--kafka-fetch-max-bytes", "1000"}, "kafka-fetch-max-bytes"},
		{"bad ordering", []string{"--ordering", "random"}, "ordering"},
		{"no in-flight", []string{"--max-in-flight", "0"}, "max-in-flight"},
		{"drain longer than rebalance", []string{"--drain-timeout", "45s"}, "drain-timeout"},
		{"drain and a heartbeat reach the session", []string{"--drain-timeout", "5s"}, "drain-timeout"},
		{"drain and a heartbeat reach the rebalance timeout", []string{"--kafka-session-timeout", "30s", "--kafka-rebalance-timeout", "4s"}, "drain-timeout"},
		{"bad log level", []string{"--log-level", "loud"}, "log-level"},
		{"bad log format", []string{"--log-format", "xml"}, "log-format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseKafkaWorker(t, tc.args...)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *Error, got %v", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("--%s (%s): ", tc.flag, EnvVar(tc.flag))) {
				t.Fatalf("no line for --%s in:\n%v", tc.flag, err)
			}
		})
	}
}

// The drain's bound names every setting it involves, and the shutdown
// timeout is not bound by the session: the member heartbeats while it
// drains at shutdown.
func TestDrainFitsTheGroupTimings(t *testing.T) {
	_, _, err := parseKafkaWorker(t, "--drain-timeout", "5500ms")
	if err == nil {
		t.Fatal("--drain-timeout 5.5s with the default session timeout (6s) and heartbeat (1s) accepted")
	}
	for _, want := range []string{"--drain-timeout (CXBRIDGE_DRAIN_TIMEOUT): 5.5s plus --kafka-heartbeat-interval (1s) must be shorter than --kafka-session-timeout (6s)",
		"--kafka-rebalance-timeout (6s)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	for _, args := range [][]string{
		{"--drain-timeout", "4900ms"},
		{"--kafka-session-timeout", "45s", "--kafka-rebalance-timeout", "60s", "--kafka-heartbeat-interval", "3s", "--drain-timeout", "30s"},
		{"--shutdown-timeout", "5m"},
	} {
		if _, _, err := parseKafkaWorker(t, args...); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// An unknown flag or an unparsable value is a configuration error too.
func TestParseErrorIsConfigError(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"--max-in-flight", "many"}} {
		_, _, err := parseKafkaWorker(t, args...)
		var cerr *Error
		if !errors.As(err, &cerr) {
			t.Fatalf("%v: want *Error, got %v", args, err)
		}
	}
}

// SASL mechanisms and TLS are built from the settings; the password stays secret.
func TestKafkaSecurity(t *testing.T) {
	t.Setenv("CXBRIDGE_KAFKA_SASL_PASSWORD", "pw-from-env")
	k, _, err := parseKafkaWorker(t, "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-username", "bridge", "--kafka-tls")
	if err != nil {
		t.Fatal(err)
	}
	d, err := k.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	if d.SASLMechanism == nil || d.SASLMechanism.Name() != "SCRAM-SHA-512" || d.TLS == nil {
		t.Fatalf("dialer %+v", d)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", k, k), "pw-from-env") {
		t.Fatal("the SASL password prints")
	}
	if _, err := (&Kafka{TLS: true, TLSCAFile: "/nonexistent.pem"}).TLSConfig(); err == nil || !strings.Contains(err.Error(), "--kafka-tls-ca-file") {
		t.Fatalf("missing CA file: %v", err)
	}
}

// The flags' defaults are DefaultCXone's, DefaultKafka's and
// DefaultWorker's: every default is set in one place.
func TestFlagDefaultsAreTheDefaults(t *testing.T) {
	var c CXone
	var k Kafka
	var w Worker
	fs := NewFlagSet("test")
	c.Register(fs)
	k.Register(fs)
	w.Register(fs)
	if err := fs.Parse(nil, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if want := DefaultCXone(); c != want {
		t.Errorf("CXone flags' defaults\n %+v\nwant\n %+v", c, want)
	}
	if want := DefaultKafka(); k != want {
		t.Errorf("Kafka flags' defaults\n %+v\nwant\n %+v", k, want)
	}
	if want := DefaultWorker(); w != want {
		t.Errorf("worker flags' defaults\n %+v\nwant\n %+v", w, want)
	}
	var p Problems
	c.BaseURL = "https://api.example.com"
	c.ClientID, c.ClientSecret = "id", NewSecret("secret")
	c.Validate(&p)
	k.Validate(&p)
	w.Validate(&p, &k)
	if err := p.Err(); err != nil {
		t.Errorf("the defaults are not valid: %v", err)
	}
}

// --ordering takes the canonical names only (dispatch.ParseMode parses
// them, case-insensitively, but the setting is checked as written).
func TestOrderingValues(t *testing.T) {
	for _, v := range []string{"key", "partition", "none"} {
		if _, _, err := parseKafkaWorker(t, "--ordering", v); err != nil {
			t.Errorf("--ordering %s: %v", v, err)
		}
	}
	for _, v := range []string{"", "KEY", " key", "keys"} {
		_, _, err := parseKafkaWorker(t, "--ordering", v)
		if err == nil || !strings.Contains(err.Error(), "--ordering (CXBRIDGE_ORDERING): must be key, partition or none") {
			t.Errorf("--ordering %q: %v, want the ordering problem", v, err)
		}
	}
}

// --kafka-input-topic takes a comma-separated list; a bad list names the topic
// and the setting.
func TestInputTopicList(t *testing.T) {
	k, _, err := parseKafkaWorker(t, "--kafka-input-topic", " orders, tickets ")
	if err != nil {
		t.Fatal(err)
	}
	if got := k.InputTopics(); !slices.Equal(got, []string{"orders", "tickets"}) {
		t.Fatalf("InputTopics = %q; want [orders tickets]", got)
	}
	if k.FirstInputTopic() != "orders" || (&Kafka{}).FirstInputTopic() != "" {
		t.Fatalf("FirstInputTopic = %q, of none %q", k.FirstInputTopic(), (&Kafka{}).FirstInputTopic())
	}
	if got := (&Kafka{InputTopic: "cxone.events"}).InputTopics(); !slices.Equal(got, []string{"cxone.events"}) {
		t.Fatalf("InputTopics of the default = %q", got)
	}
	for args, want := range map[string]string{
		"orders,,tickets":         `--kafka-input-topic (CXBRIDGE_KAFKA_INPUT_TOPIC): has an empty topic name in "orders,,tickets"`,
		"orders,tickets,orders":   `--kafka-input-topic (CXBRIDGE_KAFKA_INPUT_TOPIC): lists topic "orders" twice`,
		"orders,cxone.events.dlq": `--kafka-dlq-topic (CXBRIDGE_KAFKA_DLQ_TOPIC): must differ from --kafka-input-topic's topics ("cxone.events.dlq" is both)`,
	} {
		_, _, err := parseKafkaWorker(t, "--kafka-input-topic", args)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--input-topic %q: %v; want a line %q", args, err, want)
		}
	}
}
