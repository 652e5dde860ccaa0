package bridge

import (
	"math"
	"testing"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// A member's share of the group's --rate-limit is the partitions it holds
// ÷ the partitions of the input topic.
func TestShare(t *testing.T) {
	for _, c := range []struct {
		held, total int
		want        float64
	}{
		{6, 6, 1},
		{3, 6, 0.5},
		{2, 6, 1.0 / 3},
		{1, 6, 1.0 / 6},
		{1, 12, 1.0 / 12},
		{0, 6, 0},  // holds nothing: publishes nothing
		{0, 0, 0},  // nor before the count is known
		{2, 0, 1},  // count unknown (the brokers did not answer): all of it until known
		{7, 6, 1},  // partitions added since the count was read
		{-1, 6, 0}, // nonsense counts nothing
	} {
		if got := share(c.held, c.total); got != c.want {
			t.Errorf("share(%d, %d) = %v, want %v", c.held, c.total, got, c.want)
		}
	}
}

// What the member got of what the group settled comes from the group's
// commits between two reads; its part of the backlog from the lag of the
// partitions it holds.
func TestBalanceInputs(t *testing.T) {
	prev := consumer.GroupLag{
		Committed: map[int]int64{0: 100, 1: 200, 2: -1, 3: 50},
		End:       map[int]int64{0: 5000, 1: 5000, 2: 5000, 3: 5000},
	}
	cur := consumer.GroupLag{
		Committed: map[int]int64{0: 700, 1: 600, 2: 400, 3: 40},
		End:       map[int]int64{0: 5000, 1: 5000, 2: 5000, 3: 5000},
	}
	// 600 + 400 settled (partition 2's first commit and partition 3's
	// move back count nothing), 600 of them on the partitions held; the
	// backlog is 4300 + 4400 + 4600 + 4960, 4300 + 4600 of it held.
	part, got, ok := balanceInputs(in(prev), in(cur), held(0, 2))
	if !ok || got != 0.6 {
		t.Fatalf("got %v, ok %v; want 0.6 of what the group settled", got, ok)
	}
	if want := float64(4300+4600) / float64(4300+4400+4600+4960); math.Abs(part-want) > 1e-9 {
		t.Fatalf("part %v, want %v", part, want)
	}
	if _, _, ok := balanceInputs(nil, in(cur), held(0)); ok {
		t.Fatal("ok without a previous read")
	}
	if _, _, ok := balanceInputs(in(cur), in(cur), held(0)); ok {
		t.Fatal("ok with nothing settled")
	}
	small := consumer.GroupLag{Committed: map[int]int64{0: 600, 1: 700}, End: map[int]int64{0: 1000, 1: 700}}
	from := consumer.GroupLag{Committed: map[int]int64{0: 100, 1: 200}, End: small.End}
	if _, _, ok := balanceInputs(in(from), in(small), held(0)); ok {
		t.Fatal("ok with a backlog (400) smaller than what the group settled in the window (1000)")
	}
}

// in is one read of the offsets of the one input topic "in".
func in(o consumer.GroupLag) consumer.GroupLags { return consumer.GroupLags{"in": o} }

// held is partitions of "in".
func held(ps ...int) []consumer.TopicPartition {
	out := make([]consumer.TopicPartition, len(ps))
	for i, p := range ps {
		out[i] = consumer.TopicPartition{Topic: "in", Partition: p}
	}
	return out
}

// With two input topics, partition 0 of each is its own partition: what
// the group settled and its backlog are summed over both topics, and the
// member's part is that of the partitions it holds of either.
func TestBalanceInputsTwoTopics(t *testing.T) {
	prev := consumer.GroupLags{
		"a": {Committed: map[int]int64{0: 100, 1: 100}, End: map[int]int64{0: 5000, 1: 5000}},
		"b": {Committed: map[int]int64{0: 100}, End: map[int]int64{0: 5000}},
	}
	cur := consumer.GroupLags{
		"a": {Committed: map[int]int64{0: 400, 1: 200}, End: map[int]int64{0: 5000, 1: 5000}},
		"b": {Committed: map[int]int64{0: 700}, End: map[int]int64{0: 5000}},
	}
	// 300 + 100 + 600 settled; held b/0 (600 of them) and a/1. Backlog
	// 4600 + 4800 + 4300, 4800 + 4300 held.
	part, got, ok := balanceInputs(prev, cur, []consumer.TopicPartition{{Topic: "b", Partition: 0}, {Topic: "a", Partition: 1}})
	if !ok || math.Abs(got-0.7) > 1e-9 {
		t.Fatalf("got %v, ok %v; want 0.7 (b/0's 600 and a/1's 100 of 1000)", got, ok)
	}
	if want := float64(4800+4300) / float64(4600+4800+4300); math.Abs(part-want) > 1e-9 {
		t.Fatalf("part %v, want %v", part, want)
	}
}
