package tracing

import (
	"context"
	"strings"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
)

// Extract returns ctx with the remote span context of a record's headers
// (its W3C traceparent) as read by the global propagator: unchanged when
// tracing is off (Setup installs the propagator only when on), or the
// record carries none, or a malformed one. Callers skip it when their
// Tracer is not On.
func Extract(ctx context.Context, headers []kafka.Header) context.Context {
	if len(headers) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, headerCarrier(headers))
}

// headerCarrier reads Kafka record headers for a propagator.
type headerCarrier []kafka.Header

func (c headerCarrier) Get(key string) string {
	for i := len(c) - 1; i >= 0; i-- { // the last one wins, as event.RecordIDs reads them
		if strings.EqualFold(c[i].Key, key) {
			return string(c[i].Value)
		}
	}
	return ""
}

func (c headerCarrier) Set(string, string) {} // read only

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(c))
	for i, h := range c {
		keys[i] = h.Key
	}
	return keys
}
