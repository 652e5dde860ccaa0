package itest

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// The per-partition series follow what the member holds: the lag of every
// partition it is given appears within about a second of the assignment
// (not at the next 5 s read), and once a second member takes half the
// partitions, the first reports only its own — committed offset and lag —
// so that sums over the group's members count each partition once.
func TestPartitionSeriesFollowTheAssignment(t *testing.T) {
	s := newStack(t, 6, sim.Config{})
	s.write(keyedRecords(60, 2, 5))
	a := s.startWorker(nil)
	testutil.WaitFor(t, 30*time.Second, "a holding all 6 partitions", func() bool {
		st := a.w.Consumer().Status()
		return st.Joined && len(st.Partitions) == 6
	})
	joined := time.Now()
	series := func(r *running, name string) []int {
		_, by := r.metric(name, "partition")
		var ps []int
		for p := range maps.Keys(by) {
			n, _ := strconv.Atoi(p)
			ps = append(ps, n)
		}
		slices.Sort(ps)
		return ps
	}
	testutil.WaitFor(t, 5*time.Second, "a's lag series for its 6 partitions", func() bool { return len(series(a, "cxbridge_consumer_lag")) == 6 })
	took := time.Since(joined)
	t.Logf("lag series %v seen %v after the assignment", series(a, "cxbridge_consumer_lag"), took.Round(time.Millisecond))
	if took > 1500*time.Millisecond {
		t.Errorf("the lag series appeared %v after the assignment, want within about a second", took)
	}
	s.waitCommitted(time.Minute)
	if got := series(a, "cxbridge_committed_offset"); len(got) != 6 {
		t.Fatalf("a's committed offset series %v, want all 6 partitions", got)
	}

	b := s.startWorker(nil)
	held := func(r *running) []int {
		var ps []int
		for _, p := range r.w.Consumer().Status().Partitions {
			ps = append(ps, p.Partition)
		}
		slices.Sort(ps)
		return ps
	}
	testutil.WaitFor(t, 30*time.Second, "a and b holding 3 partitions each", func() bool {
		sa, sb := a.w.Consumer().Status(), b.w.Consumer().Status()
		return sa.Joined && sb.Joined && sa.Generation == sb.Generation && len(sa.Partitions) == 3 && len(sb.Partitions) == 3
	})
	mine := held(a)
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("a's series to be of its partitions %v only", mine), func() bool {
		return slices.Equal(series(a, "cxbridge_consumer_lag"), mine) && slices.Equal(series(a, "cxbridge_committed_offset"), mine)
	}, func() string {
		return fmt.Sprintf("lag %v, committed %v", series(a, "cxbridge_consumer_lag"), series(a, "cxbridge_committed_offset"))
	})
	b.stop(t)
	a.stop(t)
}
