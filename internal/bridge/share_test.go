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
	part, got, ok := balanceInputs(prev, cur, []int{0, 2})
	if !ok || got != 0.6 {
		t.Fatalf("got %v, ok %v; want 0.6 of what the group settled", got, ok)
	}
	if want := float64(4300+4600) / float64(4300+4400+4600+4960); math.Abs(part-want) > 1e-9 {
		t.Fatalf("part %v, want %v", part, want)
	}
	if _, _, ok := balanceInputs(consumer.GroupLag{}, cur, []int{0}); ok {
		t.Fatal("ok without a previous read")
	}
	if _, _, ok := balanceInputs(cur, cur, []int{0}); ok {
		t.Fatal("ok with nothing settled")
	}
	small := consumer.GroupLag{Committed: map[int]int64{0: 600, 1: 700}, End: map[int]int64{0: 1000, 1: 700}}
	from := consumer.GroupLag{Committed: map[int]int64{0: 100, 1: 200}, End: small.End}
	if _, _, ok := balanceInputs(from, small, []int{0}); ok {
		t.Fatal("ok with a backlog (400) smaller than what the group settled in the window (1000)")
	}
}
