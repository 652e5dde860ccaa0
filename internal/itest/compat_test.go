package itest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/devstack"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// Records a real producer (franz-go's kgo) writes with each compression
// codec are published exactly: the event CXone gets carries the record's
// own correlation id and data, byte for byte, whatever the codec; none is
// dead-lettered and every offset is committed.
func TestEveryCompressionCodecPublishedExactly(t *testing.T) {
	const partitions, per = 3, 40
	s := newStack(t, partitions, sim.Config{})
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()}, {"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()},
	}
	// The record batches the broker gets carry each codec (seen on the
	// embedded broker; a real one cannot be watched from inside).
	var mu sync.Mutex
	batches := map[int16]int{} // codec (the batch attributes' low 3 bits) → batches
	observeProduce(s.broker, s.input, func(r *kmsg.ProduceRequest) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range r.Topics {
			for _, p := range tp.Partitions {
				var b kmsg.RecordBatch
				if b.ReadFrom(p.Records) == nil {
					batches[b.Attributes&0x07]++
				}
			}
		}
		return true
	})
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	want := map[string][]byte{} // correlation id → data
	for _, c := range codecs {
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.broker.Addrs...), kgo.DefaultProduceTopic(s.input),
			kgo.ProducerBatchCompression(c.codec), kgo.ProducerLinger(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for i := range per {
			id := fmt.Sprintf("%s-%d", c.name, i)
			// Compressible data, so that each codec has something to do.
			data := fmt.Appendf(nil, `{"codec":%q,"i":%d,"pad":%q}`, c.name, i, bytes.Repeat([]byte{'a' + byte(i%26)}, 200))
			want[id] = data
			recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k-%d", i%7), Value: fmt.Appendf(nil,
				`{"eventType":"custom.codec","source":"itest","timestamp":%q,"correlationId":%q,"data":%s}`, ts, id, data)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = cl.ProduceSync(ctx, recs...).FirstErr()
		cancel()
		cl.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	if s.broker.Embedded() != nil {
		mu.Lock()
		t.Logf("record batches by codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd): %v", batches)
		for codec := range int16(5) {
			if batches[codec] == 0 {
				t.Errorf("no record batch with codec %d reached the broker", codec)
			}
		}
		mu.Unlock()
	}
	w := s.startWorker(nil)
	s.waitCommitted(time.Minute)
	w.stop(t)

	for id, data := range want {
		a, ok := s.sim.Lookup(id)
		if !ok {
			t.Errorf("%s: not published", id)
			continue
		}
		var got, exp any
		if json.Unmarshal(a.Data, &got) != nil || json.Unmarshal(data, &exp) != nil || fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("%s: published data %s, want %s", id, a.Data, data)
		}
	}
	if st := s.sim.Stats(); st.Distinct != int64(len(want)) {
		t.Errorf("%d distinct events accepted, want %d", st.Distinct, len(want))
	}
	if n := len(s.dlqRecords()); n != 0 {
		t.Errorf("%d records dead-lettered", n)
	}
}

// Partitions added to the input topic while the workers run are consumed:
// the group notices them, rebalances, and the records written to them are
// published and committed.
func TestPartitionsAddedWhileRunning(t *testing.T) {
	s := newStack(t, 2, sim.Config{})
	a := s.startWorker(nil)
	b := s.startWorker(nil)
	s.warmUp(2, 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.client.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: s.input, Count: 6}}})
	if err == nil {
		err = res.Errors[s.input]
	}
	if err != nil {
		t.Fatalf("adding partitions: %v", err)
	}
	testutil.WaitFor(t, 30*time.Second, "the topic to have 6 partitions", func() bool { return len(s.offsets().End) == 6 })
	testutil.WaitFor(t, 60*time.Second, "the workers to hold all 6 partitions", func() bool {
		sa, sb := a.w.Consumer().Status(), b.w.Consumer().Status()
		return sa.Joined && sb.Joined && sa.Generation == sb.Generation && len(sa.Partitions)+len(sb.Partitions) == 6
	})
	before := s.sim.Stats().Distinct
	recs := s.warmUp(6, 30*time.Second) // one record on each of the 6 partitions
	more := goodRecords(600, 60, 31)
	s.write(more)
	s.waitAccepted(before+int64(len(recs)+len(more)), time.Minute)
	o := s.waitCommitted(time.Minute)
	a.stop(t)
	b.stop(t)
	for p := 2; p < 6; p++ {
		if o.Committed[p] <= 0 {
			t.Errorf("new partition %d committed %d", p, o.Committed[p])
		}
	}
}

// A broker that accepts none of the versions kafka-go's consumer group
// sends of a request (here JoinGroup, limited to v0; Kafka 4.0.0 dropped
// the old ones) stops the worker at start-up with a line naming the
// request and both sides' versions, instead of a join retried forever.
func TestBrokerRefusingAnAPIVersionStopsStartup(t *testing.T) {
	v := kversion.Stable()
	v.SetMaxKeyVersion(int16(kmsg.JoinGroup), 0)
	b, err := devstack.StartBroker(devstack.BrokerConfig{Addr: "127.0.0.1:0", Partitions: 3,
		Topics: []string{inputTopic, dlqTopic}, MaxVersions: v})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	s := newStack(t, 3, sim.Config{})
	s.write(goodRecords(5, 5, 3))
	start := time.Now()
	r := s.startWorker(func(st *bridge.Settings) { st.Kafka.Brokers = b.Addrs[0] })
	err = waitRun(t, r, 15*time.Second)
	var setup *consumer.KafkaSetupError
	if !errors.As(err, &setup) {
		t.Fatalf("Run returned %v (%T), want a *consumer.KafkaSetupError", err, err)
	}
	for _, want := range []string{"does not support JoinGroup v1–v2", "the broker supports v0", b.Addrs[0]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Logf("Run returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
}
