package produce

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The shapes of the records a producer writes (Config.Shape, --shape).
const (
	// ShapeCXone records are CXone events: what the worker publishes as
	// they are.
	ShapeCXone = "cxone"
	// ShapeOrder records are a shop's orders, no CXone events: the worker
	// needs a --transform program to publish them, e.g. the README's
	//
	//	{eventType: ("order." + .status), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}
	//
	// An order is {"orderId", "status", "customer": {"id", "name",
	// "email"}, "items": [{"sku", "qty", "price"}], "total", "currency",
	// "placedAt", "key", "seq"} (plus "notes" to reach Config.Size);
	// orderId is unique within a run, key and seq are the record's Kafka
	// key and its position among that key's records.
	ShapeOrder = "order"
)

// Shapes lists the shapes, the default first.
var Shapes = []string{ShapeCXone, ShapeOrder}

// CheckShape returns an error unless shape is one of Shapes or "".
func CheckShape(shape string) error {
	if shape == "" {
		return nil
	}
	for _, s := range Shapes {
		if shape == s {
			return nil
		}
	}
	return fmt.Errorf("unknown shape %q (want %s)", shape, strings.Join(Shapes, " or "))
}

var (
	orderStatuses = []string{"placed", "paid", "shipped", "delivered", "cancelled"}
	customerNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Donald"}
	skus          = []string{"A-100", "A-220", "B-310", "C-045", "D-999"}
)

// order returns a good order record's value.
func (g *Generator) order(key string, seq int64) []byte {
	if g.run == 0 {
		g.run = g.rng.Uint32() | 1
	}
	items := make([]map[string]any, 1+g.rng.IntN(3))
	var total int64 // cents
	for i := range items {
		qty, cents := 1+g.rng.IntN(4), int64(199+g.rng.IntN(9800))
		items[i] = map[string]any{"sku": skus[g.rng.IntN(len(skus))], "qty": qty, "price": json.Number(money(cents))}
		total += int64(qty) * cents
	}
	customer := key
	if customer == "" {
		customer = fmt.Sprintf("guest-%d", g.rng.IntN(1_000_000))
	}
	name := customerNames[g.rng.IntN(len(customerNames))]
	o := map[string]any{
		"orderId":  fmt.Sprintf("o-%08x-%d", g.run, g.n),
		"status":   orderStatuses[g.rng.IntN(len(orderStatuses))],
		"customer": map[string]any{"id": customer, "name": name, "email": strings.ToLower(name) + "@example.com"},
		"items":    items,
		"total":    json.Number(money(total)),
		"currency": "EUR",
		"placedAt": time.Now().UTC().Format(time.RFC3339),
	}
	if key != "" {
		o["key"], o["seq"] = key, seq
	}
	if len(g.pad) > orderPad { // an order is about 300 bytes without notes
		o["notes"] = g.pad[orderPad:]
	}
	b, _ := json.Marshal(o)
	return b
}

// orderPad is about how much larger an order without notes is than a
// CXone event's data without padding (g.pad is Config.Size - 150): orders
// and events of one Size are about as large.
const orderPad = 100

// money writes cents as a decimal with two places: 1250 → 12.50.
func money(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }

const okOrder = `"orderId":"o-bad","customer":{"id":"user-0","name":"Ada"},"total":12.50,"currency":"EUR"`

// BadOrders lists every kind of bad order record the producer writes with
// ShapeOrder. Reason is the DLQ reason under the README's example program.
var BadOrders = []BadKind{
	{"not_json", "invalid_json", func() []byte { return []byte("order o-bad shipped {") }},
	{"binary_garbage", "invalid_json", func() []byte { return []byte{0x00, 0xff, 0x13, 0x37, 0x80, 0x7f, 0x01} }},
	{"invalid_utf8", "invalid_json", func() []byte { return []byte(`{` + okOrder + `,"status":"paid","note":"` + "\xc3\x28" + `"}`) }},
	{"status_not_string", "transform_failed", func() []byte { return []byte(`{` + okOrder + `,"status":7}`) }},
	{"order_array", "transform_failed", func() []byte { return []byte(`[{` + okOrder + `,"status":"paid"}]`) }},
	{"order_id_number", "invalid_event", func() []byte {
		return []byte(`{"orderId":1001,"status":"paid","total":12.50}`)
	}},
	{"status_too_long", "invalid_event", func() []byte {
		return []byte(`{` + okOrder + `,"status":"` + strings.Repeat("s", 130) + `"}`)
	}},
	{"order_too_large", "too_large", func() []byte {
		return []byte(`{` + okOrder + `,"status":"paid","notes":"` + strings.Repeat("n", 500_001) + `"}`)
	}},
}
