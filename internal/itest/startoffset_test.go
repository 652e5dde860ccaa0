package itest

import (
	"fmt"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// With --start-offset latest, records written after the group first took
// a partition are published although no member fetched anything from it
// before the partition changed hands: the member that first takes a
// partition the group never committed commits the offset it resolved, and
// the next owner starts there instead of resolving "latest" again, later.
//
// Worker a takes all six partitions while nothing is written; records on
// three of them show that a fetches (its readers run); a leaves; records
// are written to all six; worker b joins and takes over (the rebalance);
// then c joins b (a rebalance between living members) and more records
// are written. Every record written after a took the partitions is
// published.
func TestStartOffsetLatestSkipsNothingAcrossRebalances(t *testing.T) {
	const partitions = 6
	s := newStack(t, partitions, sim.Config{})
	latest := func(st *bridge.Settings) { st.Kafka.StartOffset = "latest" }
	a := s.startWorker(latest)
	// a took the partitions once it committed where "latest" was for each:
	// records written before that are before its start (and skipped, as
	// "latest" says), records written after it are the test's.
	testutil.WaitFor(t, 30*time.Second, "a holding all 6 partitions, its start offsets committed", func() bool {
		st := a.w.Consumer().Status()
		if !st.Joined || len(st.Partitions) != partitions {
			return false
		}
		for _, c := range s.offsets().Committed {
			if c < 0 {
				return false
			}
		}
		return true
	})
	warm := warmRecords(partitions, 3) // partitions 0, 1, 2
	before := s.sim.Stats().Distinct
	s.write(warm)
	s.waitAccepted(before+int64(len(warm)), 30*time.Second)
	a.stop(t)

	recs := keyedRecords(60, 5, 21) // over every partition
	s.write(recs)
	b := s.startWorker(latest)
	want := int64(len(warm) + len(recs))
	testutil.WaitFor(t, 30*time.Second, "every record written after a took the partitions published", func() bool {
		return s.sim.Stats().Distinct >= want
	}, func() string {
		o := s.offsets()
		return fmt.Sprintf("simulator accepted %d of %d; committed %v, end %v", s.sim.Stats().Distinct, want, o.Committed, o.End)
	})

	c := s.startWorker(latest)
	testutil.WaitFor(t, 30*time.Second, "b and c holding partitions of one generation", func() bool {
		sb, sc := b.w.Consumer().Status(), c.w.Consumer().Status()
		return sb.Joined && sc.Joined && sb.Generation == sc.Generation && len(sb.Partitions)+len(sc.Partitions) == partitions
	})
	more := goodRecords(120, 40, 22)
	s.write(more)
	want += int64(len(more))
	s.waitAccepted(want, 30*time.Second)
	s.waitCommitted(30 * time.Second)
	b.stop(t)
	c.stop(t)

	if st := s.sim.Stats(); st.Distinct != want {
		t.Errorf("simulator accepted %d distinct events, want %d", st.Distinct, want)
	}
	s.checkKeys(60, 5)
}
