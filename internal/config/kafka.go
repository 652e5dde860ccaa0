package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Kafka holds the Kafka settings of the worker and the tools. Their
// defaults are DefaultKafka's (with the reasons for the group's timings).
type Kafka struct {
	Brokers     string // comma-separated host:port list.
	InputTopic  string // comma-separated: the group reads every topic listed (InputTopics).
	GroupID     string
	DLQTopic    string
	ClientID    string
	StartOffset string // earliest or latest: where a new group starts.

	TLS           bool
	TLSCAFile     string // Optional.
	TLSCertFile   string // Optional client certificate…
	TLSKeyFile    string // …and its key.
	TLSSkipVerify bool

	SASLMechanism string // "", plain, scram-sha-256 or scram-sha-512.
	SASLUsername  string
	SASLPassword  Secret

	// The group's timings.
	SessionTimeout    time.Duration
	RebalanceTimeout  time.Duration
	HeartbeatInterval time.Duration
	FetchMaxBytes     int // What one fetch of a partition asks for.
	FetchMaxWait      time.Duration
}

// Register defines the Kafka flags on fs.
func (k *Kafka) Register(fs *FlagSet) {
	d := DefaultKafka()
	fs.StringVar(&k.Brokers, "kafka-brokers", or(k.Brokers, d.Brokers), "Kafka bootstrap brokers, comma-separated host:port")
	fs.StringVar(&k.InputTopic, "kafka-input-topic", or(k.InputTopic, d.InputTopic), "topic of events to publish; a comma-separated list reads several topics with one group (offsets, lag and metrics are per topic)")
	fs.StringVar(&k.GroupID, "kafka-group-id", or(k.GroupID, d.GroupID), "consumer group id: every worker of one deployment shares it")
	fs.StringVar(&k.DLQTopic, "kafka-dlq-topic", or(k.DLQTopic, d.DLQTopic), "topic of records that can never be delivered")
	fs.StringVar(&k.ClientID, "kafka-client-id", or(k.ClientID, d.ClientID), "Kafka client id")
	fs.StringVar(&k.StartOffset, "kafka-start-offset", or(k.StartOffset, d.StartOffset), "where a group without committed offsets starts: earliest or latest")
	fs.BoolVar(&k.TLS, "kafka-tls", k.TLS, "connect to Kafka with TLS")
	fs.StringVar(&k.TLSCAFile, "kafka-tls-ca-file", k.TLSCAFile, "PEM CA certificates for Kafka (default: the system's)")
	fs.StringVar(&k.TLSCertFile, "kafka-tls-cert-file", k.TLSCertFile, "PEM client certificate for Kafka")
	fs.StringVar(&k.TLSKeyFile, "kafka-tls-key-file", k.TLSKeyFile, "PEM client key for Kafka")
	fs.BoolVar(&k.TLSSkipVerify, "kafka-tls-skip-verify", k.TLSSkipVerify, "do not verify the brokers' certificates (testing only)")
	fs.StringVar(&k.SASLMechanism, "kafka-sasl-mechanism", k.SASLMechanism, "SASL mechanism: plain, scram-sha-256 or scram-sha-512 (default none)")
	fs.StringVar(&k.SASLUsername, "kafka-sasl-username", k.SASLUsername, "SASL user name")
	fs.SecretVar(&k.SASLPassword, "kafka-sasl-password", "SASL password")
	fs.DurationVar(&k.SessionTimeout, "kafka-session-timeout", orDur(k.SessionTimeout, d.SessionTimeout), "group session timeout: a member silent this long is removed, and a crashed member holds up a rebalance at most this long (the broker's group.min.session.timeout.ms is the floor, 6s by default)")
	fs.DurationVar(&k.RebalanceTimeout, "kafka-rebalance-timeout", orDur(k.RebalanceTimeout, d.RebalanceTimeout), "how long the group waits for members to rejoin in a rebalance")
	fs.DurationVar(&k.HeartbeatInterval, "kafka-heartbeat-interval", orDur(k.HeartbeatInterval, d.HeartbeatInterval), "group heartbeat interval")
	fs.IntVar(&k.FetchMaxBytes, "kafka-fetch-max-bytes", orInt(k.FetchMaxBytes, d.FetchMaxBytes), "bytes one fetch of a partition asks for; each partition holds one fetch response at a time, and a record batch larger than this still comes whole")
	fs.DurationVar(&k.FetchMaxWait, "kafka-fetch-max-wait", orDur(k.FetchMaxWait, d.FetchMaxWait), "longest a fetch waits for new records")
	for _, old := range KafkaRenamed {
		fs.Deprecated(old, "kafka-"+old)
	}
}

// KafkaRenamed are the Kafka settings' names before every one began with
// kafka- (CXBRIDGE_CLIENT_ID meant the Kafka client id to `run` and the
// OAuth2 client id to `sim`): each still works, with a warning.
var KafkaRenamed = []string{"input-topic", "group-id", "dlq-topic", "client-id", "start-offset"}

// Validate adds a problem for every bad Kafka setting.
func (k *Kafka) Validate(p *Problems) {
	if len(k.BrokerList()) == 0 {
		p.Add("kafka-brokers", "is required")
	}
	for _, b := range k.BrokerList() {
		if !strings.Contains(b, ":") {
			p.Add("kafka-brokers", "%q must be host:port", b)
		}
	}
	for name, v := range map[string]string{"kafka-input-topic": k.InputTopic, "kafka-group-id": k.GroupID, "kafka-dlq-topic": k.DLQTopic} {
		if v == "" {
			p.Add(name, "is required")
		}
	}
	if k.InputTopic != "" {
		k.validateInputTopics(p)
	}
	if k.StartOffset != "earliest" && k.StartOffset != "latest" {
		p.Add("kafka-start-offset", "must be earliest or latest, got %q", k.StartOffset)
	}
	if (k.TLSCertFile == "") != (k.TLSKeyFile == "") {
		p.Add("kafka-tls-key-file", "--kafka-tls-cert-file and --kafka-tls-key-file go together")
	}
	switch k.SASLMechanism {
	case "":
	case "plain", "scram-sha-256", "scram-sha-512":
		if k.SASLUsername == "" {
			p.Add("kafka-sasl-username", "is required with --kafka-sasl-mechanism %s", k.SASLMechanism)
		}
		if !k.SASLPassword.IsSet() {
			p.Add("kafka-sasl-password", "is required with --kafka-sasl-mechanism %s (or set %s)", k.SASLMechanism, FileEnvVar("kafka-sasl-password"))
		}
	default:
		p.Add("kafka-sasl-mechanism", "must be plain, scram-sha-256 or scram-sha-512, got %q", k.SASLMechanism)
	}
	positive(p, "kafka-session-timeout", k.SessionTimeout)
	positive(p, "kafka-rebalance-timeout", k.RebalanceTimeout)
	positive(p, "kafka-heartbeat-interval", k.HeartbeatInterval)
	positive(p, "kafka-fetch-max-wait", k.FetchMaxWait)
	if k.HeartbeatInterval >= k.SessionTimeout {
		p.Add("kafka-heartbeat-interval", "must be shorter than --kafka-session-timeout (%s), got %s", k.SessionTimeout, k.HeartbeatInterval)
	}
	if k.FetchMaxBytes < 64<<10 || k.FetchMaxBytes > 64<<20 {
		p.Add("kafka-fetch-max-bytes", "must be between 64 KiB and 64 MiB, got %d (a larger record batch still comes whole: this sizes fetches, not records)", k.FetchMaxBytes)
	}
}

// validateInputTopics checks --kafka-input-topic's list: no empty name, no name
// twice, and not the DLQ topic (a dead-lettered record would come back).
func (k *Kafka) validateInputTopics(p *Problems) {
	seen := map[string]bool{}
	for _, name := range strings.Split(k.InputTopic, ",") {
		switch name = strings.TrimSpace(name); {
		case name == "":
			p.Add("kafka-input-topic", "has an empty topic name in %q (a comma-separated list of topics)", k.InputTopic)
		case seen[name]:
			p.Add("kafka-input-topic", "lists topic %q twice", name)
		case name == k.DLQTopic:
			p.Add("kafka-dlq-topic", "must differ from --kafka-input-topic's topics (%q is both)", name)
		}
		seen[name] = true
	}
}

// InputTopics returns --kafka-input-topic's topics, in the order given.
func (k *Kafka) InputTopics() []string { return SplitList(k.InputTopic) }

// SplitList returns the items of a comma-separated setting, in the order
// given, without surrounding space or empty items.
func SplitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// FirstInputTopic is the first of InputTopics, "" when there is none: the
// topic the tools that write one topic (produce, dev's producer) use.
func (k *Kafka) FirstInputTopic() string {
	if ts := k.InputTopics(); len(ts) > 0 {
		return ts[0]
	}
	return ""
}

// BrokerList returns the brokers as a slice.
func (k *Kafka) BrokerList() []string { return SplitList(k.Brokers) }

// StartOffsetValue is kafka.FirstOffset or kafka.LastOffset.
func (k *Kafka) StartOffsetValue() int64 {
	if k.StartOffset == "latest" {
		return kafka.LastOffset
	}
	return kafka.FirstOffset
}

// TLSConfig returns the TLS configuration, nil without TLS.
func (k *Kafka) TLSConfig() (*tls.Config, error) {
	if !k.TLS {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: k.TLSSkipVerify} //nolint:gosec // an explicit, documented testing setting
	if k.TLSCAFile != "" {
		pem, err := os.ReadFile(k.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-tls-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--kafka-tls-ca-file: no PEM certificate in " + k.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if k.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(k.TLSCertFile, k.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-tls-cert-file/--kafka-tls-key-file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// SASL returns the SASL mechanism, nil without SASL. Each connection
// authenticates with the password as it is then: one read from a file
// (--kafka-sasl-password-file) and read again (FlagSet.ReloadSecrets, on
// SIGHUP) is used by the connections made after.
func (k *Kafka) SASL() (sasl.Mechanism, error) {
	if k.SASLMechanism == "" {
		return nil, nil
	}
	if mech, err := k.sasl(); err != nil || mech == nil { // a bad mechanism or user name: found at start
		return mech, err
	}
	return currentSASL{k: *k}, nil
}

// currentSASL is a SASL mechanism made anew, with the current password,
// for every authentication.
type currentSASL struct{ k Kafka }

func (m currentSASL) Name() string {
	mech, err := m.k.sasl()
	if err != nil {
		return ""
	}
	return mech.Name()
}

func (m currentSASL) Start(ctx context.Context) (sasl.StateMachine, []byte, error) {
	mech, err := m.k.sasl()
	if err != nil {
		return nil, nil, err
	}
	return mech.Start(ctx)
}

func (k *Kafka) sasl() (sasl.Mechanism, error) {
	switch k.SASLMechanism {
	case "plain":
		return plain.Mechanism{Username: k.SASLUsername, Password: k.SASLPassword.Value()}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, k.SASLUsername, k.SASLPassword.Value())
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, k.SASLUsername, k.SASLPassword.Value())
	}
	return nil, nil
}

// Dialer returns the dialer for readers and the consumer group.
func (k *Kafka) Dialer() (*kafka.Dialer, error) {
	tcfg, err := k.TLSConfig()
	if err != nil {
		return nil, err
	}
	mech, err := k.SASL()
	if err != nil {
		return nil, fmt.Errorf("--kafka-sasl-mechanism: %w", err)
	}
	return &kafka.Dialer{ClientID: k.ClientID, Timeout: 10 * time.Second, DualStack: true, TLS: tcfg, SASLMechanism: mech}, nil
}

// Transport returns the transport for writers.
func (k *Kafka) Transport() (*kafka.Transport, error) {
	d, err := k.Dialer()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{ClientID: k.ClientID, TLS: d.TLS, SASL: d.SASLMechanism, DialTimeout: 10 * time.Second}, nil
}
