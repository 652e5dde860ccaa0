package transform_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/event"
)

// order1KB is an order of about the size of the end-to-end benchmark's
// records (produce --shape order, 1 KB).
var order1KB = `{"orderId":"ord-000123456","status":"paid","customer":{"id":"c-4411","name":"Ada Lovelace","email":"ada@example.com"},` +
	`"items":[{"sku":"SKU-1","qty":2,"price":19.99},{"sku":"SKU-22","qty":1,"price":5.5},{"sku":"SKU-333","qty":3,"price":1.25}],` +
	`"total":49.23,"currency":"EUR","placedAt":"2026-12-02T07:00:00.000Z","key":"k-17","seq":42,"notes":"` + strings.Repeat("lorem ipsum ", 60) + `"}`

// BenchmarkApply is the cost of the README's example program per event:
// Program.Event (what the worker does), beside Apply followed by
// event.Decode (encoding the program's object and parsing it again), what
// event.Decode alone costs for an untransformed event of the same size,
// and what decoding and encoding the value with encoding/json costs (the
// floor of any mapping that parses the record). Figures:
// docs/BENCHMARKS.md.
func BenchmarkApply(b *testing.B) {
	in := sampleInput()
	ctx := context.Background()
	p := mustCompile(b, readmeProgram)
	for _, size := range []struct{ name, order string }{{"137B", sampleOrder}, {"1KB", order1KB}} {
		value := []byte(size.order)
		run := func(name string, f func() error) {
			b.Run(size.name+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(value)))
				for b.Loop() {
					if err := f(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		run("event", func() error { _, err := p.Event(ctx, value, in); return err })
		run("apply+decode", func() error {
			out, err := p.Apply(ctx, value, in)
			if err == nil {
				_, err = event.Decode(out, in.Record)
			}
			return err
		})
		untransformed := []byte(`{"eventType":"order.paid","source":"shop","timestamp":"2024-01-02T02:04:05.678Z","correlationId":"o-1001","data":` + size.order + `}`)
		run("untransformed-decode", func() error { _, err := event.Decode(untransformed, in.Record); return err })
		run("json-unmarshal-marshal", func() error {
			var v any
			if err := json.Unmarshal(value, &v); err != nil {
				return err
			}
			_, err := json.Marshal(v)
			return err
		})
	}
}
