package consumer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/config"
)

// closingListener accepts connections and closes them at once, as a TLS
// listener does with a plaintext client's first request.
func closingListener(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int32{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), accepted
}

// TestCheckKafkaGivesUpOnConnectionsClosedAtTheSameStep: brokers that
// close every connection before answering are retried, and on the third
// attempt in a row the check stops with a *KafkaSetupError naming the
// settings to check. maxWait is 10ms instead of the worker's 5s cap: the
// attempts, not the waits, are the subject.
func TestCheckKafkaGivesUpOnConnectionsClosedAtTheSameStep(t *testing.T) {
	addr, accepted := closingListener(t)
	var seen []error
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := CheckKafka(ctx, &config.Kafka{Brokers: addr}, &kafka.Dialer{Timeout: time.Second}, slog.New(slog.DiscardHandler), 10*time.Millisecond,
		func(err error) { seen = append(seen, err) })
	setup, ok := errors.AsType[*KafkaSetupError](err)
	if !ok {
		t.Fatalf("CheckKafka: %v (%T); want a *KafkaSetupError", err, err)
	}
	if msg := setup.Error(); !strings.Contains(msg, "on 3 attempts in a row") || !strings.Contains(msg, "--kafka-tls") {
		t.Errorf("error %q; want it to count 3 attempts and name --kafka-tls", msg)
	}
	if n := accepted.Load(); n != closedLimit {
		t.Errorf("%d connections; want %d, one an attempt", n, closedLimit)
	}
	if len(seen) != closedLimit-1 || seen[0] == nil || seen[1] == nil {
		t.Errorf("onErr saw %v; want the %d retried attempts' errors", seen, closedLimit-1)
	}
}

// TestCheckKafkaEndsWithItsContext: an unreachable broker is retried until
// ctx ends, and the check returns ctx's error alone.
func TestCheckKafkaEndsWithItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every dial is refused
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var attempts atomic.Int32
	err = CheckKafka(ctx, &config.Kafka{Brokers: addr}, &kafka.Dialer{Timeout: time.Second}, slog.New(slog.DiscardHandler), 20*time.Millisecond,
		func(err error) {
			if err != nil {
				attempts.Add(1)
			}
		})
	if err != context.DeadlineExceeded {
		t.Errorf("CheckKafka: %v; want ctx's error, context.DeadlineExceeded, alone", err)
	}
	if n := attempts.Load(); n < 2 {
		t.Errorf("%d retried attempts; want the refused dials retried until ctx ended", n)
	}
}
