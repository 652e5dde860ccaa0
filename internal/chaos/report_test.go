package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// WriteReport writes the results as a Markdown table, one row per
// scenario: with several runs of a scenario, counts are summed over the
// runs (lost must be 0 in every one), times are medians with the range.
// Then one line per run with the simulator's answers and the faults.
func WriteReport(w io.Writer, results []Result) {
	var order []string
	by := map[string][]Result{}
	for _, r := range results {
		if _, ok := by[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		by[r.Scenario] = append(by[r.Scenario], r)
	}
	fmt.Fprintln(w, "| scenario | fault | runs | produced | good | accepted (distinct) | duplicates | bad | dead-lettered | DLQ exact | lost | resumed | caught up | settled | passed |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|:-:|")
	for _, name := range order {
		rs := by[name]
		var s Result
		exact, passed := true, 0
		var again int
		var resumed, caught, settled []time.Duration
		for _, r := range rs {
			s.Produced += r.Produced
			s.Good += r.Good
			s.Accepted += r.Accepted
			s.Duplicates += r.Duplicates
			s.Bad += r.Bad
			s.DeadLettered += r.DeadLettered
			s.Lost += r.Lost
			again += r.DLQDuplicates
			exact = exact && r.DLQWrong == 0 && r.DeadLettered == r.Bad
			if len(r.Problems) == 0 {
				passed++
			}
			if len(r.Faults) > 0 {
				resumed = append(resumed, r.Resumed)
				caught = append(caught, r.CaughtUp)
			}
			settled = append(settled, r.Settled)
		}
		ex := "yes"
		switch {
		case !exact:
			ex = "**no**"
		case again > 0:
			ex = fmt.Sprintf("yes (%d again)", again)
		}
		pass := fmt.Sprintf("%d/%d", passed, len(rs))
		if passed != len(rs) {
			pass = "**" + pass + "**"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %s | %d | %s | %s | %s | %s |\n",
			name, rs[0].Fault, len(rs), s.Produced, s.Good, s.Accepted, s.Duplicates, s.Bad, s.DeadLettered, ex, s.Lost,
			median(resumed), median(caught), median(settled), pass)
	}
	fmt.Fprintln(w)
	writeKills(w, order, by)
	for _, r := range results {
		var st []string
		for _, code := range slices.Sorted(maps.Keys(r.Status)) {
			st = append(st, fmt.Sprintf("%d×%d", code, r.Status[code]))
		}
		fmt.Fprintf(w, "- **%s**: publishes answered %s; %d token requests; %d faults injected", r.Scenario, strings.Join(st, " "), r.TokenRequests, len(r.Faults))
		if len(r.Faults) > 0 {
			var fs []string
			for _, f := range r.Faults {
				fs = append(fs, fmt.Sprintf("%s (%s)", f.Name, f.End.Sub(f.Start).Round(100*time.Millisecond)))
			}
			fmt.Fprintf(w, ": %s", strings.Join(fs, ", "))
		}
		if r.Resets > 0 {
			fmt.Fprintf(w, "; %d connections reset", r.Resets)
		}
		fmt.Fprintf(w, "; breaker opened %d times", r.BreakerOpens)
		if r.Rejoins > 0 {
			fmt.Fprintf(w, "; workers rejoined the group %d times for partitions left unserved", r.Rejoins)
		}
		fmt.Fprintf(w, "; resumed %s, caught up %s, settled %s", round(r.Resumed), round(r.CaughtUp), round(r.Settled))
		if len(r.Kills) > 0 {
			var ks []string
			for _, k := range r.Kills {
				ks = append(ks, fmt.Sprintf("%s frozen %s, whole again %s", k.Name, round(k.Frozen), round(k.Back)))
			}
			fmt.Fprintf(w, "; kills: %s", strings.Join(ks, ", "))
		}
		fmt.Fprintf(w, "; secrets in logs: %d; order violations: %d", len(r.Secrets), r.OrderViolations)
		for _, p := range r.Problems {
			fmt.Fprintf(w, "; PROBLEM: %s", p)
		}
		fmt.Fprintln(w)
	}
}

// writeKills writes, for the scenarios that kill workers, what each kill
// cost over every run: how long the group published nothing (frozen) and
// until it was whole and publishing again, median and worst.
func writeKills(w io.Writer, order []string, by map[string][]Result) {
	header := false
	for _, name := range order {
		var frozen, back []time.Duration
		for _, r := range by[name] {
			for _, k := range r.Kills {
				frozen = append(frozen, k.Frozen)
				back = append(back, k.Back)
			}
		}
		if len(frozen) == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "| scenario | runs | kills | frozen, median | frozen, max | whole again, median | whole again, max |")
			fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
			header = true
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s |\n", name, len(by[name]), len(frozen),
			round(medianOf(frozen)), round(slices.Max(frozen)), round(medianOf(back)), round(slices.Max(back)))
	}
	if header {
		fmt.Fprintln(w)
	}
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }

func medianOf(ds []time.Duration) time.Duration {
	ds = slices.Sorted(slices.Values(ds))
	if len(ds)%2 == 0 {
		return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
	}
	return ds[len(ds)/2]
}

// median formats the median of ds and, with several, their range; – for none.
func median(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	slices.Sort(ds)
	m := medianOf(ds)
	if len(ds) == 1 {
		return round(m).String()
	}
	return fmt.Sprintf("%s (%s–%s)", round(m), round(ds[0]), round(ds[len(ds)-1]))
}
