package consumer

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/dispatch"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// A member of a group whose input topic does not exist holds no
// partitions: it must wait for the topic (and say so in the log and its
// status), not churn through generations as fast as the coordinator
// answers, and join once the topic is created. Both brokers the tests run
// on leave a topic uncreated when its metadata is read (the check does not
// ask for auto-creation; testkafka's Kafka has auto.create.topics.enable
// off).
func TestMissingTopicDoesNotChurn(t *testing.T) {
	b := testkafka.Start(t, testkafka.Config{Partitions: 1, Topics: []string{"other"}})
	topic := b.Topic("late") // not created yet
	var generations atomic.Int32
	assigned := make(chan []TopicPartition, 100)
	var logs testutil.SyncBuffer
	c, err := New(Config{Brokers: b.Addrs, Topic: topic, GroupID: b.Group("g-missing"),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Hooks: Hooks{Assigned: func(_ int32, parts []TopicPartition) {
			generations.Add(1)
			select {
			case assigned <- parts:
			default:
			}
		}}},
		dispatch.New(dispatch.ModeKey, 10), func(context.Context, kafka.Message, time.Time) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer c.transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	// The member says why it waits, and keeps waiting.
	testutil.WaitFor(t, 30*time.Second, "a log line naming the missing topic",
		func() bool { return strings.Contains(logs.String(), "the input topic does not exist") }, logs.String)
	if got := c.Status().MissingTopics; !slices.Equal(got, []string{topic}) {
		t.Fatalf("Status().MissingTopics = %v while the member waits for %s", got, topic)
	}
	// A window of time, not a synchronisation: how many generations the
	// member went through while the topic was missing (before the fix:
	// thousands a second).
	time.Sleep(3 * time.Second)
	if n := generations.Load(); n > 3 {
		t.Fatalf("%d generations in 3 s on a missing topic: the member churns", n)
	}

	// The topic appears: the member joins and gets its partitions.
	b.CreateTopic("late", 2, nil)
	for got := []TopicPartition(nil); len(got) != 2; {
		select {
		case got = <-assigned:
		case <-ctx.Done():
			t.Fatalf("no generation with the new topic's 2 partitions; log:\n%s", logs.String())
		}
	}
	if got := c.Status().MissingTopics; got != nil {
		t.Fatalf("Status().MissingTopics = %v once the topic exists", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context's end")
	}
}
