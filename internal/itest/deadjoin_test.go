package itest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// deadJoin sends the group a JoinGroup of a new member (version 2, as
// kafka-go's, range assignment of topic, the session and rebalance
// timeouts given) on a connection of its own and closes the connection at
// once: the member's join is pending when its connection dies, as a
// worker's is when it is killed while the group rebalances.
func deadJoin(t *testing.T, addr, group, topic string, session, rebalance time.Duration) {
	t.Helper()
	meta := (&kmsg.ConsumerMemberMetadata{Version: 0, Topics: []string{topic}}).AppendTo(nil)
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = 2
	req.Group = group
	req.SessionTimeoutMillis = int32(session / time.Millisecond)
	req.RebalanceTimeoutMillis = int32(rebalance / time.Millisecond)
	req.ProtocolType = "consumer"
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta}}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("dead-joiner")).AppendRequest(nil, req, 1)); err != nil {
		t.Fatal(err)
	}
}

// groupMembers is how many members the coordinator counts in the group,
// the dead ones it has not removed included.
func (s *stack) groupMembers() int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := s.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{s.group}})
	if err != nil {
		s.t.Fatal(err)
	}
	for _, g := range res.Groups {
		if g.GroupID == s.group {
			return len(g.Members)
		}
	}
	return 0
}

// A member whose connection dies while its join is pending (a worker
// killed during a rebalance) must not keep partitions: the living worker
// ends up holding every partition and publishes every record, within a
// bound. On the embedded broker (kfake) such a member is never expired —
// its session timer only starts when the join answer reaches it — and the
// group would keep half the partitions on it for good; the worker notices
// the partitions left with uncommitted records and no progress, and
// leaves and rejoins the group, which drops the dead member. A real Kafka
// broker expires the member after its session timeout by itself (the
// worker then never rejoins).
func TestMemberDeadInJoin(t *testing.T) {
	// Mostly waiting, as TestOutageNoRejoin: the two run side by side.
	t.Parallel()
	const session, rebalance = 6 * time.Second, 5 * time.Second // as stack.settings
	s := newStack(t, 6, sim.Config{Faults: sim.Faults{Latency: sim.Duration(2 * time.Millisecond)}})
	// A publish attempt's deadline of 2 s, not 15 s, keeps the bound after
	// which the worker acts at 27 s instead of 79 s (see unservedBound);
	// the chaos scenario kill-9-join proves the shipped settings.
	a := s.startWorker(func(st *bridge.Settings) { st.CXone.Timeout = 2 * time.Second })
	testutil.WaitFor(t, 30*time.Second, "the worker holding all 6 partitions", func() bool {
		st := a.w.Consumer().Status()
		return st.Joined && len(st.Partitions) == 6
	})
	s.warmUp(6, 30*time.Second)
	gen := a.w.Consumer().Status().Generation

	// The embedded broker's answer to a join whose connection is gone
	// fails or not at random (it may still go into the connection's
	// buffer), and only a failed one leaves the member unexpired: a dead
	// joiner is sent until one stays in the group past its session (10
	// tries: 1023 times out of 1024). A real broker expires every one: one
	// try proves it.
	tries := 10
	if testkafka.External() {
		tries = 1
	}
	var t0 time.Time
	for try := 1; ; try++ {
		t0 = time.Now()
		deadJoin(t, s.broker.Addrs[0], s.group, s.input, session, rebalance)
		testutil.WaitFor(t, 10*time.Second, "the dead member's join accepted", func() bool { return s.groupMembers() == 2 })
		testutil.WaitFor(t, 30*time.Second, "a generation with the dead member", func() bool {
			st := a.w.Consumer().Status()
			return st.Joined && st.Generation > gen
		})
		st := a.w.Consumer().Status()
		gen = st.Generation
		t.Logf("try %d: %v after the dead join: generation %d, the worker holds %d partitions (%s broker)",
			try, time.Since(t0).Round(time.Millisecond), st.Generation, len(st.Partitions), testkafka.Name())
		// Not an event but its absence: the dead member's session passes
		// and, expired, it would be removed at once.
		time.Sleep(session + 2*time.Second)
		if n := s.groupMembers(); n > 1 || try == tries {
			t.Logf("try %d: %d group members %v after the dead join", try, n, time.Since(t0).Round(time.Millisecond))
			break
		}
		gen = a.w.Consumer().Status().Generation
	}

	recs := goodRecords(600, 120, 23)
	s.write(recs)
	var ready, page string // what /readyz and the status page said of unserved partitions
	testutil.WaitFor(t, 2*time.Minute, "the worker holding all 6 partitions again", func() bool {
		if d := a.w.Admin().Ready().Components["consumer"].Detail; ready == "" && strings.Contains(d, "unserved") {
			ready = d
		}
		if st := a.w.Status(); page == "" && len(st.Unserved) > 0 {
			page = fmt.Sprintf("%+v (%s)", st.Unserved, st.UnservedNote)
		}
		st := a.w.Consumer().Status()
		return st.Joined && len(st.Partitions) == 6
	}, func() string {
		st := a.w.Consumer().Status()
		return fmt.Sprintf("the worker holds %d partitions; %d group members", len(st.Partitions), s.groupMembers())
	})
	healed := time.Since(t0)
	s.waitCommitted(time.Minute)
	if d := s.sim.Stats().Distinct; d != int64(len(recs))+6 {
		t.Errorf("simulator accepted %d distinct events, want %d", d, len(recs)+6)
	}
	rejoins, _ := a.metric("cxbridge_group_rejoins_total", "")
	t.Logf("the worker held every partition %v after the dead join; it rejoined the group %v time(s)", healed.Round(time.Millisecond), rejoins)
	if testkafka.External() {
		if rejoins != 0 {
			t.Errorf("the worker rejoined %v times on a broker that expires the dead member by itself", rejoins)
		}
	} else {
		t.Logf("/readyz said %q; the status page %s", ready, page)
		if rejoins < 1 {
			t.Errorf("the worker never rejoined: the embedded broker does not expire a member that died in its join")
		}
		if ready == "" || page == "" {
			t.Errorf("the unserved partitions were not shown: /readyz %q, status page %q", ready, page)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "cxbridge_group_unserved_partitions back to 0", func() bool {
		un, _ := a.metric("cxbridge_group_unserved_partitions", "")
		return un == 0
	})
}

// A CXone outage longer than the bound after which a worker acts on
// partitions left unserved does not make the workers rejoin the group:
// every partition stalls, each worker's own with records in hand. Two
// workers, every record written as the outage starts, the outage 45 s
// against a bound of 27 s (a publish attempt's deadline of 2 s, as in
// TestMemberDeadInJoin, keeps it that short; at the shipped settings it is
// 88 s).
func TestOutageNoRejoin(t *testing.T) {
	t.Parallel()
	const outage = 45 * time.Second
	s := newStack(t, 6, sim.Config{Faults: sim.Faults{Latency: sim.Duration(2 * time.Millisecond)}})
	fast := func(st *bridge.Settings) { st.CXone.Timeout = 2 * time.Second }
	a, b := s.startWorker(fast), s.startWorker(fast)
	testutil.WaitFor(t, 30*time.Second, "both workers holding partitions of one generation", func() bool {
		sa, sb := a.w.Consumer().Status(), b.w.Consumer().Status()
		return sa.Joined && sb.Joined && sa.Generation == sb.Generation && len(sa.Partitions)+len(sb.Partitions) == 6
	})
	s.warmUp(6, 30*time.Second)
	held := s.waitCommitted(30 * time.Second)
	gen := a.w.Consumer().Status().Generation

	s.sim.SetFaults(sim.Faults{OutageFor: sim.Duration(outage), Latency: sim.Duration(2 * time.Millisecond)})
	end := time.Now().Add(outage)
	recs := goodRecords(1200, 200, 29)
	s.write(recs)
	// Watch both workers' unserved gauges through the outage.
	var seen float64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, r := range []*running{a, b} {
				n, _ := r.metric("cxbridge_group_unserved_partitions", "")
				seen = max(seen, n)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	// The outage is a window of time, not an event to await.
	time.Sleep(time.Until(end.Add(-time.Second)))
	close(stop)
	<-done
	o := s.offsets()
	still := 0
	for p := range o.End {
		if o.Lag(p) > 0 && o.Committed[p] == held.Committed[p] {
			still++
		}
	}
	t.Logf("after %v of outage: %d of 6 partitions with uncommitted records and their committed offsets unmoved since it began; lag %d", outage, still, o.TotalLag())
	if still < 6 {
		t.Errorf("only %d partitions stalled through the outage: it did not hold the group back as a whole", still)
	}
	s.waitCommitted(2 * time.Minute)
	if d := s.sim.Stats().Distinct; d != int64(len(recs))+6 {
		t.Errorf("simulator accepted %d distinct events, want %d", d, len(recs)+6)
	}
	ra, _ := a.metric("cxbridge_group_rejoins_total", "")
	rb, _ := b.metric("cxbridge_group_rejoins_total", "")
	if ra != 0 || rb != 0 {
		t.Errorf("the workers rejoined the group %v and %v times during a CXone outage", ra, rb)
	}
	if seen != 0 {
		t.Errorf("cxbridge_group_unserved_partitions reached %v during a CXone outage", seen)
	}
	if g := a.w.Consumer().Status().Generation; g != gen {
		t.Errorf("the group rebalanced during the outage: generation %d, was %d", g, gen)
	}
}
