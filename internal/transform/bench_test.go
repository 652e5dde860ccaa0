package transform_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/cxbridge/cxbridge/internal/event"
)

// BenchmarkApply is the cost of the README's example program per event,
// beside what decoding and encoding the same value with encoding/json
// costs (json.Unmarshal into any, then json.Marshal): the floor of any
// mapping that parses the record. Figures: docs/BENCHMARKS.md.
func BenchmarkApply(b *testing.B) {
	value := []byte(sampleOrder)
	in := sampleInput()
	b.Run("readme-example", func(b *testing.B) {
		p := mustCompile(b, readmeProgram)
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(int64(len(value)))
		for b.Loop() {
			if _, err := p.Apply(ctx, value, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("readme-example+decode", func(b *testing.B) { // what the worker does per record
		p := mustCompile(b, readmeProgram)
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(int64(len(value)))
		for b.Loop() {
			out, err := p.Apply(ctx, value, in)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := event.Decode(out, in.Record); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-unmarshal-marshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(value)))
		for b.Loop() {
			var v any
			if err := json.Unmarshal(value, &v); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
