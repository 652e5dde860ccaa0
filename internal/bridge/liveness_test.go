package bridge

import (
	"slices"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// The wedge verdict: only a held partition with records to fetch, none in
// flight and no fetch step for longer than the bound counts.
func TestWedgedVerdict(t *testing.T) {
	const bound = 31 * time.Second
	stale, fresh := 40*time.Second, 2*time.Second
	offsets := consumer.GroupLags{"in": {Committed: map[int]int64{0: 10, 1: 10, 2: -1}, End: map[int]int64{0: 20, 1: 10, 2: 5}},
		"other": {Committed: map[int]int64{0: 20}, End: map[int]int64{0: 20}}}
	part := func(id int, committed int64, pending int, since time.Duration) consumer.PartitionStatus {
		return consumer.PartitionStatus{Topic: "in", Partition: id, Committed: committed, Pending: pending, SinceStep: since}
	}
	tps := func(ids ...int) []consumer.TopicPartition {
		var out []consumer.TopicPartition
		for _, id := range ids {
			out = append(out, consumer.TopicPartition{Topic: "in", Partition: id})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		st      consumer.Status
		offsets consumer.GroupLags
		want    []consumer.TopicPartition
	}{
		{"records to fetch, none in flight, no step past the bound", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(0, 10, 0, stale)}}, offsets, tps(0)},
		{"never committed by the group", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(2, -1, 0, stale)}}, offsets, tps(2)},
		{"a step within the bound", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(0, 10, 0, fresh)}}, offsets, nil},
		{"exactly the bound", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(0, 10, 0, bound)}}, offsets, nil},
		{"records in flight (CXone down, DLQ refusing)", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(0, 10, 3, stale)}}, offsets, nil},
		{"nothing to fetch (an idle topic)", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(1, 10, 0, stale)}}, offsets, nil},
		{"the member is ahead of the group's last read", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(0, 20, 0, stale)}}, offsets, nil},
		{"the topic's end never read", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(0, 10, 0, stale)}}, consumer.GroupLags{}, nil},
		{"not a member (a broker outage ends the generation)", consumer.Status{Joined: false, Partitions: []consumer.PartitionStatus{part(0, 10, 0, stale)}}, offsets, nil},
		{"several", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{part(0, 10, 0, stale), part(1, 10, 0, stale), part(2, -1, 0, stale)}}, offsets, tps(0, 2)},
		{"partition 0 of another topic, caught up", consumer.Status{Joined: true, Partitions: []consumer.PartitionStatus{{Topic: "other", Partition: 0, Committed: 20, SinceStep: stale}}}, offsets, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wedged(tc.st, tc.offsets, bound); !slices.Equal(got, tc.want) {
				t.Fatalf("wedged = %v, want %v", got, tc.want)
			}
		})
	}
}
