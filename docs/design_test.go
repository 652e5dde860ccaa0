// Package docs holds the checks that keep docs/DESIGN.md and README.md
// true to the tree: the package graph, the test names the invariants
// table cites, the invariant numbers the code cites, the README's package
// list.
package docs

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite DESIGN.md's package graph from go list")

const (
	module     = "github.com/cxbridge/cxbridge/"
	graphStart = "<!-- graph:start (generated: go test ./docs -run TestDesignPackageGraph -update) -->\n"
	graphEnd   = "<!-- graph:end -->"
)

// pkg is one package of the module as go list sees it.
type pkg struct {
	ImportPath string
	Name       string
	GoFiles    []string
	Imports    []string
}

// listPackages returns the module's packages with Go files outside tests,
// by short name (internal/ dropped), with their imports within the module
// (tests' imports not counted).
func listPackages(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	graph := map[string][]string{}
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if len(p.GoFiles) == 0 {
			continue // test-only
		}
		var deps []string
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module) {
				deps = append(deps, short(imp))
			}
		}
		slices.Sort(deps)
		graph[short(p.ImportPath)] = deps
	}
	return graph
}

func short(importPath string) string {
	return strings.TrimPrefix(strings.TrimPrefix(importPath, module), "internal/")
}

// renderGraph writes the graph one package a line: "name → its imports".
func renderGraph(graph map[string][]string) string {
	names := make([]string, 0, len(graph))
	width := 0
	for n := range graph {
		names = append(names, n)
		width = max(width, len(n))
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("```text\n")
	for _, n := range names {
		deps := strings.Join(graph[n], ", ")
		if deps == "" {
			deps = "—"
		}
		fmt.Fprintf(&b, "%-*s → %s\n", width, n, deps)
	}
	b.WriteString("```\n")
	return b.String()
}

func readDesign(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("DESIGN.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// DESIGN.md's package graph is the tree's: every package with Go files
// outside tests and its imports within the module, as go list says.
func TestDesignPackageGraph(t *testing.T) {
	design := readDesign(t)
	i, j := strings.Index(design, graphStart), strings.Index(design, graphEnd)
	if i < 0 || j < i {
		t.Fatalf("DESIGN.md lacks the markers %q … %q", graphStart, graphEnd)
	}
	got, want := design[i+len(graphStart):j], renderGraph(listPackages(t))
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile("DESIGN.md", []byte(design[:i+len(graphStart)]+want+design[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	gotLines, wantLines := strings.Split(got, "\n"), strings.Split(want, "\n")
	for _, l := range wantLines {
		if !slices.Contains(gotLines, l) {
			t.Errorf("go list says, DESIGN.md does not: %s", l)
		}
	}
	for _, l := range gotLines {
		if !slices.Contains(wantLines, l) {
			t.Errorf("DESIGN.md says, go list does not: %s", l)
		}
	}
	t.Log("rewrite it with: go test ./docs -run TestDesignPackageGraph -update")
}

// invariantsTable returns the rows of DESIGN.md's "Where each invariant
// lives" table: the invariant's number, its code and its test cells.
func invariantsTable(t *testing.T, design string) (rows [][3]string) {
	t.Helper()
	_, after, ok := strings.Cut(design, "## Where each invariant lives")
	if !ok {
		t.Fatal(`DESIGN.md has no "## Where each invariant lives" section`)
	}
	for _, line := range strings.Split(after, "\n") {
		if strings.HasPrefix(line, "## ") {
			break
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if !strings.HasPrefix(line, "|") || len(cells) != 3 || strings.HasPrefix(cells[0], "---") || cells[0] == "invariant" {
			continue
		}
		rows = append(rows, [3]string{cells[0], cells[1], cells[2]})
	}
	return rows
}

// invariantCount is how many invariants DESIGN.md's list states (1., 2., …
// under "## The invariants").
func invariantCount(t *testing.T, design string) int {
	t.Helper()
	_, after, ok := strings.Cut(design, "## The invariants")
	if !ok {
		t.Fatal(`DESIGN.md has no "## The invariants" section`)
	}
	section, _, _ := strings.Cut(after, "\n## ")
	n := 0
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, strconv.Itoa(n+1)+". ") {
			n++
		}
	}
	return n
}

var testName = regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Z0-9_][A-Za-z0-9_]*)`")

// definedTests returns the names of every test, fuzz target and benchmark
// defined in the tree's _test.go files.
func definedTests(t *testing.T) map[string]bool {
	t.Helper()
	def := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)\w*)\(`)
	names := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range def.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// Every invariant has a row naming where it lives and at least one test
// that proves it, and every test the table names exists in the tree.
func TestDesignInvariantsTable(t *testing.T) {
	design := readDesign(t)
	n := invariantCount(t, design)
	if n == 0 {
		t.Fatal("DESIGN.md states no invariant")
	}
	rows := invariantsTable(t, design)
	defined := definedTests(t)
	seen := map[int]bool{}
	for _, r := range rows {
		num, err := strconv.Atoi(strings.Fields(r[0])[0])
		if err != nil || num < 1 || num > n {
			t.Errorf("row %q: not one of the invariants 1–%d", r[0], n)
			continue
		}
		seen[num] = true
		if strings.TrimSpace(r[1]) == "" {
			t.Errorf("invariant %d: no code named", num)
		}
		cited := testName.FindAllStringSubmatch(r[2], -1)
		if len(cited) == 0 {
			t.Errorf("invariant %d: no test named (in backquotes) in %q", num, r[2])
		}
		for _, c := range cited {
			if !defined[c[1]] {
				t.Errorf("invariant %d cites %s, which no _test.go file defines", num, c[1])
			}
		}
	}
	for i := 1; i <= n; i++ {
		if !seen[i] {
			t.Errorf("invariant %d has no row in the table", i)
		}
	}
}

// Comments citing "invariant N" (or "invariants N and M", "design
// invariant N") cite DESIGN.md's list: N is one of its numbers.
func TestInvariantCitationsResolve(t *testing.T) {
	n := invariantCount(t, readDesign(t))
	cite := regexp.MustCompile(`(?i)invariants? (\d+(?:(?:, | and )\d+)*)`)
	num := regexp.MustCompile(`\d+`)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range cite.FindAllStringSubmatch(line, -1) {
				for _, s := range num.FindAllString(m[1], -1) {
					if k, _ := strconv.Atoi(s); k < 1 || k > n {
						t.Errorf("%s:%d cites invariant %d; DESIGN.md states 1–%d", path, i+1, k, n)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// README's layout paragraph names every package with Go files.
func TestREADMEPackageList(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(b), "The layout:")
	if !ok {
		t.Fatal(`README.md has no "The layout:" paragraph`)
	}
	layout, _, _ = strings.Cut(layout, "\n\n")
	for name := range listPackages(t) {
		path := name
		if !strings.Contains(name, "/") {
			path = "internal/" + name
		}
		if !strings.Contains(layout, "`"+path+"`") {
			t.Errorf("README's layout does not name `%s`", path)
		}
	}
}
