package produce_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/event"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/transform"
)

// The README's example program, as given there.
const readmeProgram = `{eventType: ("order." + .status), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}`

// mapOrder does to a record what the worker does with the README's
// program: transform, then decode; it returns the event or the DLQ reason.
func mapOrder(t *testing.T, p *transform.Program, value []byte, key string, ts time.Time) (*event.Event, string) {
	t.Helper()
	rec := event.Record{Topic: "orders", Partition: 1, Offset: 7}
	ev, err := p.Event(context.Background(), value, transform.Input{Record: rec, Key: []byte(key), Timestamp: ts})
	if te, ok := errors.AsType[*transform.Error](err); ok {
		return nil, string(te.Reason)
	}
	if ee, ok := errors.AsType[*event.Error](err); ok {
		return nil, string(ee.Reason)
	}
	if err != nil {
		t.Fatalf("Event: %v", err)
	}
	return ev, ""
}

// Orders are no CXone events, and the README's program maps every good one
// to a valid event: its type from the status, its correlation id the
// orderId (unique within the run), the order as data with the key and seq
// the simulator checks the order of.
func TestOrderShapeMapsWithREADMEProgram(t *testing.T) {
	p, err := transform.Compile(readmeProgram)
	if err != nil {
		t.Fatal(err)
	}
	g := produce.NewGenerator(produce.Config{Keys: 10, Size: 300, Seed: 5, Shape: produce.ShapeOrder})
	ids := map[string]bool{}
	statuses := map[string]int{}
	seqs := map[string]int64{}
	for i := range 500 {
		m, bad := g.Next()
		if bad {
			t.Fatalf("record %d is bad with InvalidRatio 0", i)
		}
		if _, err := event.Decode(m.Value, event.Record{}); err == nil {
			t.Fatalf("an order decodes as a CXone event as it is: %s", m.Value)
		}
		ev, reason := mapOrder(t, p, m.Value, string(m.Key), m.Time)
		if reason != "" {
			t.Fatalf("order %s: DLQ reason %s", m.Value, reason)
		}
		var o struct {
			OrderID, Status, Key string
			Seq                  int64
			Total                json.Number
			Customer             struct{ ID string }
		}
		if err := json.Unmarshal(ev.Data, &o); err != nil {
			t.Fatal(err)
		}
		if ev.EventType != "order."+o.Status || ev.Source != "shop" || ev.CorrelationID != o.OrderID ||
			ev.Timestamp != m.Time.UTC().Format("2006-01-02T15:04:05.000Z") || o.Key != string(m.Key) || o.Customer.ID != string(m.Key) {
			t.Fatalf("event %+v from order %s", ev, m.Value)
		}
		if o.Seq != seqs[o.Key] {
			t.Fatalf("key %s: seq %d, want %d", o.Key, o.Seq, seqs[o.Key])
		}
		seqs[o.Key]++
		if ids[o.OrderID] {
			t.Fatalf("orderId %s twice", o.OrderID)
		}
		ids[o.OrderID] = true
		statuses[o.Status]++
	}
	if len(statuses) != 5 {
		t.Fatalf("statuses %v, want all five", statuses)
	}
	// Another run (another seed) has other order ids.
	m, _ := produce.NewGenerator(produce.Config{Keys: 10, Seed: 6, Shape: produce.ShapeOrder}).Next()
	if ev, _ := mapOrder(t, p, m.Value, string(m.Key), m.Time); ids[ev.CorrelationID] {
		t.Fatalf("orderId %s of another run repeats", ev.CorrelationID)
	}
}

// Orders of one Size are about as large as events of that Size (the
// benchmarks compare the two).
func TestOrderShapeSize(t *testing.T) {
	for _, size := range []int{300, 900} {
		var orders, events int
		go1 := produce.NewGenerator(produce.Config{Keys: 10, Size: size, Seed: 1, Shape: produce.ShapeOrder})
		ge := produce.NewGenerator(produce.Config{Keys: 10, Size: size, Seed: 1})
		for range 200 {
			o, _ := go1.Next()
			e, _ := ge.Next()
			orders += len(o.Value)
			events += len(e.Value)
		}
		if r := float64(orders) / float64(events); r < 0.8 || r > 1.2 {
			t.Errorf("size %d: orders average %d bytes, events %d", size, orders/200, events/200)
		}
	}
}

// Every bad order kind is written in turn, marked with its kind, and gets
// its stated DLQ reason under the README's program.
func TestBadOrdersGetTheirReason(t *testing.T) {
	p, err := transform.Compile(readmeProgram)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range produce.BadOrders {
		if _, reason := mapOrder(t, p, k.Value(), "", time.Now()); reason != k.Reason {
			t.Errorf("%s: reason %q, want %q", k.Name, reason, k.Reason)
		}
	}
	g := produce.NewGenerator(produce.Config{Keys: 10, InvalidRatio: 0.5, Seed: 7, Shape: produce.ShapeOrder})
	kinds := map[string]int{}
	for range 1000 {
		m, bad := g.Next()
		if !bad {
			continue
		}
		for _, h := range m.Headers {
			if h.Key == produce.BadHeader {
				kinds[string(h.Value)]++
			}
		}
	}
	for _, k := range produce.BadOrders {
		if kinds[k.Name] < 30 {
			t.Errorf("kind %s written %d times in ~500 bad records", k.Name, kinds[k.Name])
		}
	}
	if len(kinds) != len(produce.BadOrders) {
		t.Errorf("kinds written %v, want exactly BadOrders'", kinds)
	}
}

func TestCheckShape(t *testing.T) {
	for _, s := range []string{"", "cxone", "order"} {
		if err := produce.CheckShape(s); err != nil {
			t.Errorf("CheckShape(%q) = %v", s, err)
		}
	}
	if err := produce.CheckShape("orders"); err == nil || err.Error() != fmt.Sprintf("unknown shape %q (want cxone or order)", "orders") {
		t.Errorf("CheckShape(orders) = %v", err)
	}
}
