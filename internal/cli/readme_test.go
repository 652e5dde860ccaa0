package cli

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/bridge"
)

var update = flag.Bool("update", false, "rewrite the README's configuration table")

const (
	tableStart = "<!-- settings:run:start (generated: go test ./internal/cli -run TestREADMEConfigTable -update) -->\n"
	tableEnd   = "<!-- settings:run:end -->"
)

// The README's configuration table is exactly what `cxbridge run --help`
// lists: every setting, its variable and its default.
func TestREADMEConfigTable(t *testing.T) {
	var s bridge.Settings
	want := workerFlags("run", &s).Markdown()
	const path = "../../README.md"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	i, j := strings.Index(readme, tableStart), strings.Index(readme, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the markers %q … %q", tableStart, tableEnd)
	}
	got := readme[i+len(tableStart) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme[:i+len(tableStart)]+want+readme[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README.md's configuration table is out of date with `cxbridge run --help`; run\n  go test ./internal/cli -run TestREADMEConfigTable -update")
}
