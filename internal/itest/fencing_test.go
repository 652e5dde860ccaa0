package itest

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/sim"
)

// A commit of a generation that has ended is refused and moves nothing:
// the coordinator fences it by the generation id that kafka-go's commit
// carries. This is what keeps a member that lost its partitions (expired,
// or slow to notice a rebalance) from committing over their new owner —
// the worker commits only through its generation. Member 1 holds every
// partition in its first generation; member 2 joins; once both are in the
// next one, member 1's commit through the old generation fails and the
// committed offset stays where the new generation put it. Runs on the
// embedded broker and on Apache Kafka (make test-kafka).
func TestLateCommitOfAnEndedGenerationIsFenced(t *testing.T) {
	s := newStack(t, 2, sim.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	member := func() *kafka.ConsumerGroup {
		g, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
			ID: s.group, Brokers: s.broker.Addrs, Topics: []string{s.input},
			SessionTimeout: 6 * time.Second, HeartbeatInterval: 500 * time.Millisecond, RebalanceTimeout: 6 * time.Second,
			JoinGroupBackoff: 200 * time.Millisecond, Timeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		return g
	}
	m1 := member()
	old, err := m1.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(old.Assignments[s.input]); n != 2 {
		t.Fatalf("member 1 holds %d partitions of its first generation, want 2", n)
	}
	m2 := member()
	type joined struct {
		gen *kafka.Generation
		err error
	}
	next2 := make(chan joined, 1)
	go func() { g, err := m2.Next(ctx); next2 <- joined{g, err} }()
	// Member 1 sees the rebalance at a heartbeat, and joins the next
	// generation as its Next returns.
	cur, err := m1.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	j := <-next2
	if j.err != nil {
		t.Fatal(j.err)
	}
	if cur.ID == old.ID || j.gen.ID != cur.ID {
		t.Fatalf("generations: old %d, member 1 now %d, member 2 %d; want one new generation", old.ID, cur.ID, j.gen.ID)
	}
	p := cur.Assignments[s.input][0].ID
	if err := cur.CommitOffsets(map[string]map[int]int64{s.input: {p: 7}}); err != nil {
		t.Fatalf("a commit of the current generation: %v", err)
	}
	err = old.CommitOffsets(map[string]map[int]int64{s.input: {p: 3}})
	t.Logf("a commit through generation %d while the group is at %d: %v", old.ID, cur.ID, err)
	if err == nil {
		t.Fatal("a commit through an ended generation was accepted")
	}
	// kafka-go refuses it before sending (the old generation's connection
	// is closed); the coordinator refuses it too, should one be sent.
	res, err := s.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: s.group, GenerationID: int(old.ID), MemberID: old.MemberID,
		Topics: map[string][]kafka.OffsetCommit{s.input: {{Partition: p, Offset: 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	perr := res.Topics[s.input][0].Error
	t.Logf("the coordinator's answer to the same commit: %v", perr)
	if perr == nil {
		t.Fatal("the coordinator accepted a commit of an ended generation")
	}
	if got := s.offsets().Committed[p]; got != 7 {
		t.Fatalf("partition %d committed at %d after the late commit, want 7 (the current generation's)", p, got)
	}
}
