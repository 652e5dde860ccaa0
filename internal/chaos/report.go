package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// WriteReport writes the results as a Markdown table, then one line per
// scenario with the simulator's answers and the faults injected.
func WriteReport(w io.Writer, results []Result) {
	fmt.Fprintln(w, "| scenario | fault | produced | good | accepted (distinct) | duplicates | bad | dead-lettered | DLQ exact | lost | resumed | caught up | settled | passed |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|:-:|")
	for _, r := range results {
		exact := "yes"
		if r.DLQWrong > 0 || r.DeadLettered != r.Bad {
			exact = "**no**"
		} else if r.DLQDuplicates > 0 {
			exact = fmt.Sprintf("yes (+%d again)", r.DLQDuplicates)
		}
		passed := "yes"
		if len(r.Problems) > 0 {
			passed = "**no**"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %d | %s | %d | %s | %s | %s | %s |\n",
			r.Scenario, r.Fault, r.Produced, r.Good, r.Accepted, r.Duplicates, r.Bad, r.DeadLettered, exact, r.Lost,
			dur(r.Resumed, len(r.Faults)), dur(r.CaughtUp, len(r.Faults)), r.Settled.Round(100*time.Millisecond), passed)
	}
	fmt.Fprintln(w)
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
		fmt.Fprintf(w, "; secrets in logs: %d; order violations: %d", len(r.Secrets), r.OrderViolations)
		for _, p := range r.Problems {
			fmt.Fprintf(w, "; PROBLEM: %s", p)
		}
		fmt.Fprintln(w)
	}
}

func dur(d time.Duration, faults int) string {
	if faults == 0 {
		return "–"
	}
	return d.Round(100 * time.Millisecond).String()
}
