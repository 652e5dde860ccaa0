package bridge

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// read is one read of the offsets in a groupWatch table case: at seconds
// from the start, the committed and end offsets of partitions 0..5, and
// what this member holds (partition → records it holds of it).
type read struct {
	at        int
	committed [6]int64
	end       [6]int64
	gen       int32 // 0: not a member
	held      map[int]int

	// What the read must say.
	rejoin   bool
	unserved []int
	held2    bool // a reason not to act is given
}

func (r read) offsets() consumer.GroupLags {
	o := consumer.GroupLag{Committed: map[int]int64{}, End: map[int]int64{}}
	for p := range 6 {
		o.Committed[p], o.End[p] = r.committed[p], r.end[p]
	}
	return consumer.GroupLags{"in": o}
}

func (r read) status() consumer.Status {
	st := consumer.Status{Joined: r.gen > 0, Generation: r.gen}
	for _, p := range slices.Sorted(func(yield func(int) bool) {
		for p := range r.held {
			if !yield(p) {
				return
			}
		}
	}) {
		st.Partitions = append(st.Partitions, consumer.PartitionStatus{Topic: "in", Partition: p, Tracked: r.held[p]})
	}
	return st
}

func TestGroupWatchRule(t *testing.T) {
	const bound = 10 * time.Second
	// Partitions 2 and 3 were given to a dead member at generation 5: their
	// committed offsets stay at 40 while records come in; this member
	// holds 0 and 1 and keeps up (lag 0, moving).
	mine := map[int]int{0: 0, 1: 0}
	wedged := func(at int, c01 int64, rejoin bool, unserved ...int) read {
		return read{at: at, gen: 5, held: mine,
			committed: [6]int64{c01, c01, 40, 40, 90, 90}, end: [6]int64{c01, c01, 41 + int64(at), 41 + int64(at), 90, 90},
			rejoin: rejoin, unserved: unserved}
	}
	// A CXone outage: nothing settles anywhere, records keep coming, and
	// this member holds records of its own partitions 0, 1, 2.
	outage := func(at int, gen int32, held map[int]int, hold bool) read {
		n := 100 + int64(at)
		return read{at: at, gen: gen, held: held, committed: [6]int64{100, 100, 100, 100, 100, 100}, end: [6]int64{n, n, n, n, n, n}, held2: hold}
	}
	busy := map[int]int{0: 30, 1: 25, 2: 40}
	cases := []struct {
		name  string
		reads []read
	}{
		{"dead member keeps partitions 2 and 3: rejoin after the bound", []read{
			wedged(0, 10, false), wedged(5, 20, false), wedged(10, 30, true, 2, 3),
		}},
		{"not before the bound, counted from this member's last assignment", []read{
			wedged(0, 10, false), wedged(5, 20, false),
			{at: 10, gen: 6, held: mine, committed: [6]int64{30, 30, 40, 40, 90, 90}, end: [6]int64{30, 30, 50, 50, 90, 90}},
			{at: 15, gen: 6, held: mine, committed: [6]int64{40, 40, 40, 40, 90, 90}, end: [6]int64{40, 40, 55, 55, 90, 90}},
			{at: 20, gen: 6, held: mine, committed: [6]int64{50, 50, 40, 40, 90, 90}, end: [6]int64{50, 50, 60, 60, 90, 90}, rejoin: true, unserved: []int{2, 3}},
		}},
		{"partitions that move are served, however slowly", []read{
			{at: 0, gen: 5, held: mine, committed: [6]int64{10, 10, 40, 40, 0, 0}, end: [6]int64{10, 10, 400, 400, 0, 0}},
			{at: 10, gen: 5, held: mine, committed: [6]int64{10, 10, 41, 41, 0, 0}, end: [6]int64{10, 10, 400, 400, 0, 0}},
			{at: 20, gen: 5, held: mine, committed: [6]int64{10, 10, 42, 42, 0, 0}, end: [6]int64{10, 10, 400, 400, 0, 0}},
		}},
		{"partitions without uncommitted records are never unserved", []read{
			{at: 0, gen: 5, held: mine, committed: [6]int64{10, 10, 40, 40, 0, 0}, end: [6]int64{10, 10, 40, 40, 0, 0}},
			{at: 30, gen: 5, held: mine, committed: [6]int64{10, 10, 40, 40, 0, 0}, end: [6]int64{10, 10, 40, 40, 0, 0}},
		}},
		{"CXone outage, two members: own partitions stalled with records in hand veto a rejoin", []read{
			outage(0, 5, busy, false), outage(5, 5, busy, false), outage(10, 5, busy, false), outage(15, 5, busy, true), outage(60, 5, busy, true),
		}},
		{"CXone outage, a member holding nothing and seeing nothing move does nothing", []read{
			outage(0, 5, nil, false), outage(10, 5, nil, false), outage(20, 5, nil, true), outage(60, 5, nil, true),
		}},
		{"a member holding nothing, the others served: rejoin", []read{
			{at: 0, gen: 5, committed: [6]int64{10, 10, 40, 40, 50, 50}, end: [6]int64{10, 10, 60, 60, 50, 50}},
			{at: 5, gen: 5, committed: [6]int64{20, 10, 40, 40, 50, 50}, end: [6]int64{20, 10, 60, 60, 50, 50}},
			{at: 10, gen: 5, committed: [6]int64{30, 10, 40, 40, 50, 50}, end: [6]int64{30, 10, 60, 60, 50, 50}, rejoin: true, unserved: []int{2, 3}},
		}},
		{"an own partition held without fetching it is unserved", []read{
			{at: 0, gen: 5, held: map[int]int{0: 0, 1: 0, 2: 0}, committed: [6]int64{10, 10, 40, 90, 90, 90}, end: [6]int64{10, 10, 60, 90, 90, 90}},
			{at: 10, gen: 5, held: map[int]int{0: 0, 1: 0, 2: 0}, committed: [6]int64{10, 10, 40, 90, 90, 90}, end: [6]int64{10, 10, 60, 90, 90, 90}, rejoin: true, unserved: []int{2}},
		}},
		{"not a member: nothing to say", []read{
			{at: 0, committed: [6]int64{10, 10, 40, 40, 0, 0}, end: [6]int64{10, 10, 60, 60, 0, 0}},
			{at: 30, committed: [6]int64{10, 10, 40, 40, 0, 0}, end: [6]int64{10, 10, 60, 60, 0, 0}},
		}},
		{"backoff: a rejoin that did not help is repeated after the bound, then twice the bound, …", []read{
			wedged(0, 10, false), wedged(10, 20, true, 2, 3),
			{at: 15, gen: 7, held: mine, committed: [6]int64{30, 30, 40, 40, 90, 90}, end: [6]int64{30, 30, 55, 55, 90, 90}},
			{at: 25, gen: 7, held: mine, committed: [6]int64{40, 40, 40, 40, 90, 90}, end: [6]int64{40, 40, 65, 65, 90, 90}, rejoin: true, unserved: []int{2, 3}},
			{at: 30, gen: 8, held: mine, committed: [6]int64{50, 50, 40, 40, 90, 90}, end: [6]int64{50, 50, 70, 70, 90, 90}},
			{at: 40, gen: 8, held: mine, committed: [6]int64{60, 60, 40, 40, 90, 90}, end: [6]int64{60, 60, 80, 80, 90, 90}, held2: true, unserved: []int{2, 3}},
			{at: 45, gen: 8, held: mine, committed: [6]int64{70, 70, 40, 40, 90, 90}, end: [6]int64{70, 70, 85, 85, 90, 90}, rejoin: true, unserved: []int{2, 3}},
		}},
		{"the episode ends once every partition is served: the backoff starts over", []read{
			wedged(0, 10, false), wedged(10, 20, true, 2, 3),
			{at: 20, gen: 7, held: mine, committed: [6]int64{30, 30, 60, 60, 90, 90}, end: [6]int64{30, 30, 60, 60, 90, 90}},
			{at: 30, gen: 7, held: mine, committed: [6]int64{40, 40, 60, 60, 90, 90}, end: [6]int64{40, 40, 70, 70, 90, 90}},
			{at: 40, gen: 7, held: mine, committed: [6]int64{50, 50, 60, 60, 90, 90}, end: [6]int64{50, 50, 80, 80, 90, 90}, rejoin: true, unserved: []int{2, 3}},
		}},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGroupWatch(bound)
			for _, r := range c.reads {
				v := g.observe(t0.Add(time.Duration(r.at)*time.Second), r.offsets(), r.status())
				var got []int
				for _, u := range v.Unserved {
					got = append(got, u.Partition)
				}
				if v.Rejoin != r.rejoin || !slices.Equal(got, r.unserved) || (v.Held != "") != r.held2 {
					t.Fatalf("read at %ds: rejoin %v, unserved %v, not acting because %q; want rejoin %v, unserved %v, a reason not to act %v",
						r.at, v.Rejoin, got, v.Held, r.rejoin, r.unserved, r.held2)
				}
			}
		})
	}
}

// The bound at the shipped settings, and how it follows them.
func TestUnservedBound(t *testing.T) {
	s := shippedSettings(t)
	// 6 s session + 6 s rebalance + 3 s drain + 1 s commit + 5 s between
	// reads + a record's every attempt: 4 × 15 s and waits of 1, 2, 4 s.
	if got, want := unservedBound(s), 88*time.Second; got != want {
		t.Errorf("bound at the shipped settings %v, want %v", got, want)
	}
	s.CXone.Timeout, s.CXone.MaxRetries, s.CXone.MaxBackoff = 2*time.Second, 5, 3*time.Second
	// 21 s + 6 × 2 s + waits of 1, 2, 3, 3, 3 s.
	if got, want := unservedBound(s), 45*time.Second; got != want {
		t.Errorf("bound %v, want %v", got, want)
	}
}

// Partitions that stay unserved however often the member rejoins: the
// rejoins come a bound apart at first (and a bound after each new
// assignment at the earliest), then twice, four, eight and at most 16
// times the bound apart.
func TestGroupWatchBackoffCap(t *testing.T) {
	const bound = 10 * time.Second
	g := newGroupWatch(bound)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	gen := int32(5)
	var at []int
	for s := 0; s <= 900; s += 5 {
		r := read{at: s, gen: gen, held: map[int]int{0: 0, 1: 0},
			committed: [6]int64{int64(s), int64(s), 40, 40, 90, 90}, end: [6]int64{int64(s), int64(s), 50, 50, 90, 90}}
		if g.observe(t0.Add(time.Duration(s)*time.Second), r.offsets(), r.status()).Rejoin {
			at = append(at, s)
			gen++ // the rejoin's generation, seen at the next read
		}
	}
	var gaps []int
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i]-at[i-1])
	}
	want := []int{15, 20, 40, 80, 160, 160, 160}
	if at[0] != 10 || !slices.Equal(gaps[:min(len(gaps), len(want))], want) {
		t.Errorf("rejoins at %v s (gaps %v), want the first at 10 s and gaps %v…", at, gaps, want)
	}
}

// With two input topics, partition 0 of each is its own partition: this
// member holds a/0 and keeps up; b/0 stays still with records. b/0 — not
// a/0, whose number it shares — is unserved after the bound, and the logs
// name it topic/partition.
func TestGroupWatchTwoTopics(t *testing.T) {
	const bound = 10 * time.Second
	g := newGroupWatch(bound)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := consumer.Status{Joined: true, Generation: 3, Partitions: []consumer.PartitionStatus{{Topic: "a", Partition: 0}}}
	var v groupVerdict
	for s := 0; s <= 10; s += 5 {
		c := int64(10 * s)
		o := consumer.GroupLags{
			"a": {Committed: map[int]int64{0: c}, End: map[int]int64{0: c}},
			"b": {Committed: map[int]int64{0: 40}, End: map[int]int64{0: 50 + c}},
		}
		v = g.observe(t0.Add(time.Duration(s)*time.Second), o, st)
		if s < 10 && (v.Rejoin || len(v.Unserved) > 0) {
			t.Fatalf("at %ds: %+v; want nothing before the bound", s, v)
		}
	}
	if !v.Rejoin || len(v.Unserved) != 1 || v.Unserved[0].Topic != "b" || v.Unserved[0].Partition != 0 || v.Unserved[0].Held {
		t.Fatalf("after the bound: %+v; want b/0 unserved (not held) and a rejoin", v)
	}
	if got := describeUnserved(v.Unserved); !strings.HasPrefix(got, "b/0 (110 uncommitted") {
		t.Errorf("describeUnserved = %q; want it to name b/0", got)
	}
}
