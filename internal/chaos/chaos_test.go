package chaos

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/testutil"
)

var (
	sizeFlag   = flag.String("chaos.size", "reduced", "suite size: reduced (make test) or full (make chaos)")
	reportFlag = flag.String("chaos.report", "", "write the results table (Markdown) to this file")
	onlyFlag   = flag.String("chaos.only", "", "run only these scenarios, comma-separated")
	keepFlag   = flag.Bool("chaos.keep", false, "keep every scenario's directory (process logs, broker data)")
	runsFlag   = flag.Int("chaos.runs", 1, "run the suite this many times (the report gives medians)")
)

var binary string

// TestMain builds the real binary once: the suite runs it as processes.
func TestMain(m *testing.M) {
	flag.Parse()
	testutil.Main(m, &binary)
}

// Every scenario of the suite on real processes: nothing lost, the DLQ
// holds exactly the bad records, every offset committed, no secret logged.
func TestChaos(t *testing.T) {
	size, ok := Sizes[*sizeFlag]
	if !ok {
		t.Fatalf("-chaos.size=%q: want reduced or full", *sizeFlag)
	}
	if testing.Short() {
		t.Skip("the chaos suite runs real processes for minutes")
	}
	var results []Result
	for run := range *runsFlag {
		for _, sc := range Scenarios {
			if *onlyFlag != "" && !strings.Contains(","+*onlyFlag+",", ","+sc.Name+",") {
				continue
			}
			name := sc.Name
			if *runsFlag > 1 {
				name = fmt.Sprintf("%s/run-%d", sc.Name, run+1)
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				if *keepFlag {
					var err error
					if dir, err = os.MkdirTemp("", "chaos-"+sc.Name+"-"); err != nil {
						t.Fatal(err)
					}
					t.Logf("processes' logs and data in %s", dir)
				}
				r := Run(context.Background(), binary, dir, size, sc, t.Logf)
				results = append(results, r)
				var b bytes.Buffer
				WriteReport(&b, []Result{r})
				t.Logf("%s: %d produced, %d accepted (+%d duplicates), %d dead-lettered (+%d again), %d lost, resumed %v, caught up %v, settled in %v, %d faults\n%s",
					sc.Name, r.Produced, r.Accepted, r.Duplicates, r.DeadLettered, r.DLQDuplicates, r.Lost, r.Resumed, r.CaughtUp, r.Settled, len(r.Faults), b.String())
				for _, p := range r.Problems {
					t.Error(p)
				}
				if r.Produced == 0 || r.Good == 0 || r.Bad == 0 {
					t.Errorf("nothing to check: %d produced, %d good, %d bad", r.Produced, r.Good, r.Bad)
				}
			})
		}
	}
	if *reportFlag != "" {
		var b bytes.Buffer
		WriteReport(&b, results)
		if err := os.WriteFile(*reportFlag, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
