package config

import "time"

// The shipped settings: every default of the worker's settings is set here
// and nowhere else. Register uses them as the flags' defaults (a value
// already in the struct, as `cxbridge dev` presets, wins); the README's
// settings table is generated from the flags.

// DefaultCXone returns the CXone settings' defaults.
func DefaultCXone() CXone {
	return CXone{
		TokenStyle:         "json",
		Scope:              "event:publish",
		Timeout:            15 * time.Second,
		MaxConns:           512,
		TokenRefreshBefore: 5 * time.Minute,
		MaxRetries:         3,
		RetryBackoff:       time.Second,
		MaxBackoff:         30 * time.Second,
		BreakerFailures:    5,
		BreakerOpenTimeout: 5 * time.Second,
		BreakerProbes:      1,
	}
}

// DefaultKafka returns the Kafka settings' defaults.
//
// The group's timings are chosen so that a member killed (kill -9) and
// started again costs the group seconds, not its whole session timeout:
//
//   - SessionTimeout 6s: the coordinator waits for a dead member that
//     long (kafka-go has no static membership, so a restarted member is a
//     new one and the group waits for the old one to expire, or for the
//     rebalance timeout, before it can rebalance). 6s is the smallest a
//     stock broker accepts (Kafka's and Redpanda's
//     group.min.session.timeout.ms).
//   - HeartbeatInterval 1s: a sixth of the session, so five heartbeats may
//     be lost before the member is; members learn of a rebalance within 1s.
//   - RebalanceTimeout 6s: how long the coordinator waits for the living
//     members to rejoin; each needs up to a heartbeat to notice and
//     --drain-timeout (3s) to drain, so 6s leaves 2s for the commit and
//     the join.
func DefaultKafka() Kafka {
	return Kafka{
		Brokers:           "localhost:9092",
		InputTopic:        "cxone.events",
		GroupID:           "cxbridge",
		DLQTopic:          "cxone.events.dlq",
		ClientID:          "cxbridge",
		StartOffset:       "earliest",
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  6 * time.Second,
		HeartbeatInterval: time.Second,
		FetchMaxBytes:     256 << 10,
		FetchMaxWait:      500 * time.Millisecond,
	}
}

// DefaultWorker returns the worker settings' defaults.
func DefaultWorker() Worker {
	return Worker{
		Ordering:                   "key",
		MaxInFlight:                256,
		MaxInFlightBytes:           DefaultMaxInFlightBytes,
		MaxUncommittedPerPartition: 4096,
		ShutdownTimeout:            30 * time.Second,
		DrainTimeout:               3 * time.Second,
		CommitInterval:             time.Second,
		AdminAddr:                  ":8090",
		LogLevel:                   "info",
		LogFormat:                  "auto",
	}
}

// DefaultMaxInFlightBytes is --max-in-flight-bytes' default: 16 MiB (see
// the flag's help for how it fits deploy/k8s's memory limit).
const DefaultMaxInFlightBytes = 16 << 20
