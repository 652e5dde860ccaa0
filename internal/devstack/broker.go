// Package devstack runs cxbridge's embedded local stack: an in-process
// Kafka-protocol broker (franz-go's kfake) with the input and DLQ topics,
// used by `cxbridge dev`, the integration tests and the benchmarks.
package devstack

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kversion"
)

// BrokerConfig configures the embedded broker.
type BrokerConfig struct {
	// Addr is 127.0.0.1:PORT (the broker listens on loopback only); port 0 picks one.
	Addr string
	// Partitions of each topic. Default 6.
	Partitions int
	// Topics to create.
	Topics []string
	// DataDir keeps records and committed offsets across restarts of the
	// process. Optional.
	DataDir string
	// MinSessionTimeout lowers the broker's minimum group session timeout
	// (default 6s), for fast tests.
	MinSessionTimeout time.Duration
	// TLS, when set, makes the broker accept TLS connections only, serving
	// this configuration's certificate (see internal/certs).
	TLS *tls.Config
	// SASLUsers, when any, make the broker require SASL authentication:
	// a connection may send nothing but ApiVersions and the SASL exchange
	// before it authenticated as one of them.
	SASLUsers []SASLUser
	// MaxVersions, when set, limits the API versions the broker advertises
	// and accepts, as an older (or newer, narrower) broker would (tests).
	MaxVersions *kversion.Versions
}

// Broker is a running embedded broker.
type Broker struct {
	c     *kfake.Cluster
	Addrs []string
}

// StartBroker starts the embedded broker.
func StartBroker(cfg BrokerConfig) (*Broker, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	port := 0
	if cfg.Addr != "" {
		host, p, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("broker address %q: %w", cfg.Addr, err)
		}
		if host != "" && host != "127.0.0.1" && host != "localhost" {
			return nil, fmt.Errorf("broker address %q: the embedded broker listens on 127.0.0.1 only", cfg.Addr)
		}
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("broker address %q: bad port", cfg.Addr)
		}
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(int32(cfg.Partitions), cfg.Topics...),
		kfake.DefaultNumPartitions(cfg.Partitions)}
	if cfg.DataDir != "" {
		// Without SyncWrites: a killed broker process loses nothing (the
		// writes are in the page cache), only a machine crash could, as with
		// Kafka's default flush settings; fsync per batch costs 20× the throughput.
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.MaxVersions != nil {
		opts = append(opts, kfake.MaxVersions(cfg.MaxVersions))
	}
	if cfg.MinSessionTimeout > 0 {
		opts = append(opts, kfake.GroupMinSessionTimeout(cfg.MinSessionTimeout))
	}
	sec, err := securityOpts(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	opts = append(opts, sec...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &Broker{c: c, Addrs: c.ListenAddrs()}, nil
}

// Cluster is the kfake cluster, for fault injection in tests.
func (b *Broker) Cluster() *kfake.Cluster { return b.c }

// Close stops the broker.
func (b *Broker) Close() { b.c.Close() }
