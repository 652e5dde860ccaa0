// Package testkafka gives the tests their Kafka broker: the embedded one
// (franz-go's kfake, in the test process) by default, or a real broker
// named by the environment — an Apache Kafka started by scripts/kafka.sh
// in `make test-kafka`, or any other the developer points the tests at.
//
//	CXBRIDGE_TEST_KAFKA_BROKERS=127.0.0.1:9092   bootstrap brokers of a running broker
//	CXBRIDGE_TEST_KAFKA_DIR=/tmp/kafka           its scripts/kafka.sh data directory (optional):
//	                                             SASL and TLS listeners, kill and restart
//
// On a real broker every test gets topics and a group of its own (the names
// carry the test's name and a random suffix) and deletes its topics when it
// ends, so that tests never see each other's records or offsets. Tests that
// need what only the embedded broker offers (fault injection) say why and
// skip on a real one; the broker's name is in every report.
package testkafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/devstack"
)

// The environment variables that name a real broker.
const (
	EnvBrokers = "CXBRIDGE_TEST_KAFKA_BROKERS"
	EnvDir     = "CXBRIDGE_TEST_KAFKA_DIR"
)

// External reports whether the tests run against a real broker.
func External() bool { return strings.TrimSpace(os.Getenv(EnvBrokers)) != "" }

// Name is the broker the tests run against, for reports: "embedded" or
// "kafka" (a real broker).
func Name() string {
	if External() {
		return "kafka"
	}
	return "embedded"
}

// Config says what a test needs of its broker.
type Config struct {
	// Partitions of each topic. Default 6.
	Partitions int
	// Topics to create, by the names the test knows them (see Broker.Topic).
	Topics []string
	// MinSessionTimeout lowers the embedded broker's minimum group session
	// timeout (6 s, as Kafka's) for fast tests. A real broker keeps its own.
	MinSessionTimeout time.Duration
}

// Broker is a test's broker.
type Broker struct {
	Addrs []string

	t          testing.TB
	embedded   *devstack.Broker
	partitions int
	prefix     string // of the test's topic and group names on a real broker

	mu    sync.Mutex
	names map[string]string

	// tr is the transport of the test's own clients and writers. kafka-go's
	// default transport is shared by the whole test binary and caches each
	// address's metadata for up to 6 s: a broker started on the port of one
	// that a previous test closed would be written to with the old broker's
	// partition count ("topic partition not found").
	tr *kafka.Transport
}

// newBroker is b's common part; the transport's connections are closed
// when the test ends.
func newBroker(t testing.TB) *Broker {
	b := &Broker{t: t, names: map[string]string{}, tr: &kafka.Transport{}}
	t.Cleanup(b.tr.CloseIdleConnections)
	return b
}

// Start returns the test's broker with cfg's topics created; the embedded
// one is stopped and a real one's topics are deleted when the test ends.
func Start(t testing.TB, cfg Config) *Broker {
	t.Helper()
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	b := newBroker(t)
	b.partitions = cfg.Partitions
	if !External() {
		eb, err := devstack.StartBroker(devstack.BrokerConfig{Addr: "127.0.0.1:0", Partitions: cfg.Partitions,
			Topics: cfg.Topics, MinSessionTimeout: cfg.MinSessionTimeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eb.Close)
		b.embedded, b.Addrs = eb, eb.Addrs
		return b
	}
	for _, a := range strings.Split(os.Getenv(EnvBrokers), ",") {
		if a = strings.TrimSpace(a); a != "" {
			b.Addrs = append(b.Addrs, a)
		}
	}
	b.prefix = Prefix(t.Name())
	for _, name := range cfg.Topics {
		b.CreateTopic(name, cfg.Partitions, nil)
	}
	return b
}

// Use wraps an embedded broker the test started itself, set up as it needs
// (TLS, SASL): its names are the test's own.
func Use(t testing.TB, eb *devstack.Broker) *Broker {
	b := newBroker(t)
	b.embedded, b.Addrs = eb, eb.Addrs
	return b
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Prefix is a prefix of topic and group names that no other test (nor
// run) uses, made from test (a test's or scenario's name).
func Prefix(test string) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := strings.Trim(unsafeChars.ReplaceAllString(test, "_"), "_")
	if len(name) > 80 {
		name = name[:80]
	}
	return "t." + name + "." + hex.EncodeToString(r[:]) + "."
}

// Embedded is the embedded broker, nil on a real one.
func (b *Broker) Embedded() *devstack.Broker { return b.embedded }

// RequireEmbedded skips the test on a real broker, saying why.
func (b *Broker) RequireEmbedded(why string) {
	b.t.Helper()
	if b.embedded == nil {
		b.t.Skipf("needs the embedded broker: %s", why)
	}
}

// Topic is the name of the test's topic name on this broker: name itself
// on the embedded broker, a name of the test's own on a real one.
func (b *Broker) Topic(name string) string {
	if b.embedded != nil {
		return name
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n, ok := b.names[name]; ok {
		return n
	}
	n := b.prefix + name
	b.names[name] = n
	return n
}

// Group is the name of the test's consumer group name on this broker.
func (b *Broker) Group(name string) string {
	if b.embedded != nil {
		return name
	}
	return b.prefix + name
}

// Transport is the transport of this broker's test clients, its own.
func (b *Broker) Transport() *kafka.Transport { return b.tr }

// Client is a client of the broker.
func (b *Broker) Client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(b.Addrs...), Timeout: 10 * time.Second, Transport: b.tr}
}

// Writer is a writer to the broker's topic that hashes keys to partitions
// like any producer and waits for every replica; the caller sets the rest
// and closes it.
func (b *Broker) Writer(topic string) *kafka.Writer {
	return &kafka.Writer{Addr: kafka.TCP(b.Addrs...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: b.tr}
}

// CreateTopic creates the test's topic name with partitions and topic
// configs (max.message.bytes, cleanup.policy, …), waits until every
// partition has a leader, and returns its name on the broker. On a real
// broker it is deleted when the test ends.
func (b *Broker) CreateTopic(name string, partitions int, configs map[string]string) string {
	b.t.Helper()
	real := b.Topic(name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := CreateTopics(ctx, b.Client(), partitions, configs, real); err != nil {
		b.t.Fatal(err)
	}
	if b.embedded == nil {
		b.t.Cleanup(func() { b.deleteTopic(real) })
	}
	return real
}

// CreateTopics creates topics with partitions (one replica each) and
// configs, and waits until every partition has a leader. A topic still
// being deleted is waited for.
func CreateTopics(ctx context.Context, c *kafka.Client, partitions int, configs map[string]string, topics ...string) error {
	for _, topic := range topics {
		tc := kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}
		for k, v := range configs {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		for {
			res, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
			if err == nil {
				err = res.Errors[topic]
			}
			if err == nil {
				break
			}
			if !errors.Is(err, kafka.TopicAlreadyExists) || ctx.Err() != nil {
				return fmt.Errorf("creating topic %s: %w", topic, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := WaitTopic(ctx, c, topic, partitions); err != nil {
			return err
		}
	}
	return nil
}

// DeleteTopics deletes topics, best effort.
func DeleteTopics(ctx context.Context, c *kafka.Client, topics ...string) error {
	res, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range topics {
		if e := res.Errors[t]; e != nil {
			errs = append(errs, fmt.Errorf("deleting topic %s: %w", t, e))
		}
	}
	return errors.Join(errs...)
}

// DeleteTopic deletes topic (its name on the broker) and waits until the
// broker no longer knows it; it returns how many partitions it had.
func (b *Broker) DeleteTopic(topic string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := b.Client()
	partitions := 0
	if md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}}); err == nil {
		for _, t := range md.Topics {
			if t.Name == topic {
				partitions = len(t.Partitions)
			}
		}
	}
	res, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		b.t.Fatalf("deleting topic %s: %v", topic, err)
	}
	for {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && errors.Is(md.Topics[0].Error, kafka.UnknownTopicOrPartition) {
			return partitions
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("topic %s still known 30s after its deletion", topic)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *Broker) deleteTopic(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := DeleteTopics(ctx, b.Client(), name); err != nil {
		b.t.Logf("%v", err)
	}
}

// WaitTopic waits until topic has partitions partitions, each with a leader.
func WaitTopic(ctx context.Context, c *kafka.Client, topic string, partitions int) error {
	var last error
	for {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil {
			last = fmt.Errorf("topic %s has no metadata yet", topic)
			for _, t := range md.Topics {
				if t.Name != topic {
					continue
				}
				ready := t.Error == nil && len(t.Partitions) >= partitions
				for _, p := range t.Partitions {
					if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
						ready = false
					}
				}
				if ready {
					return nil
				}
				last = fmt.Errorf("topic %s: %d partitions, error %v", topic, len(t.Partitions), t.Error)
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for topic %s: %w (last: %v)", topic, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Env is the scripts/kafka.sh environment of the real broker (kafka.env in
// its data directory: the SASL and TLS listeners), nil without one.
func Env() map[string]string {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(dir, "kafka.env"))
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			out[k] = v
		}
	}
	return out
}

// Script is the path of scripts/kafka.sh in this checkout.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "kafka.sh")
}

// Restartable reports whether the real broker can be killed and started
// again by the tests (its scripts/kafka.sh data directory is known).
func Restartable() bool { return External() && os.Getenv(EnvDir) != "" }

// Kill kills the real broker (SIGKILL) with scripts/kafka.sh.
func Kill(ctx context.Context) error { return script(ctx, "kill") }

// Restart starts the real broker again on its data and waits until it
// answers metadata.
func Restart(ctx context.Context) error { return script(ctx, "restart") }

func script(ctx context.Context, cmd string) error {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return fmt.Errorf("%s is not set: the real broker cannot be %sed", EnvDir, cmd)
	}
	out, err := exec.CommandContext(ctx, "bash", Script(), cmd, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("scripts/kafka.sh %s: %w: %s", cmd, err, out)
	}
	return nil
}
