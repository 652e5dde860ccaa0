package event_test

import (
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/event"
)

// typicalEvent is a ~1 KB event: the usual fields, no ids (Decode derives
// them) and a data object of a few dozen members.
var typicalEvent = []byte(`{"eventType":"contact.interaction.completed","source":"crm-backend",` +
	`"timestamp":"2024-05-06T07:08:09.123Z","data":{"contactId":"C-000123456","agentId":"A-987",` +
	`"skill":"billing","channel":"voice","queue":{"id":42,"name":"Billing EN","priority":3},` +
	`"durations":{"queueMs":12345,"talkMs":234567,"holdMs":3456,"wrapMs":45678},` +
	`"customer":{"id":"cust-77","name":"José Müller","tier":"gold","tags":["vip","renewal","emea"]},` +
	`"disposition":{"code":"RESOLVED","note":"Refund approved & confirmed <ticket 8812>"},` +
	`"survey":{"offered":true,"score":9,"comment":"` + strings.Repeat("Great help. ", 30) + `"}}}`)

func BenchmarkDecode(b *testing.B) {
	rec := event.Record{Topic: "orders", Partition: 3, Offset: 42, Headers: []event.Header{
		{Key: "traceparent", Value: []byte(tp)},
	}}
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalEvent)))
	for b.Loop() {
		if _, err := event.Decode(typicalEvent, rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBody(b *testing.B) {
	ev, err := event.Decode(typicalEvent, event.Record{Topic: "orders", Partition: 3, Offset: 42})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalEvent)))
	for b.Loop() {
		if _, err := ev.Body(); err != nil {
			b.Fatal(err)
		}
	}
}
