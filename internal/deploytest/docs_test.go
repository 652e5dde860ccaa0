package deploytest

import (
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
)

// operatorDocs name the worker's metrics, settings and Kafka's errors;
// quotingDocs also quote its words in `"…"` (docs/CONTRACT.md's `"…"` are
// JSON values).
var (
	operatorDocs = []string{"docs/TROUBLESHOOTING.md", "docs/CXONE-TENANT.md", "docs/CONTRACT.md"}
	quotingDocs  = []string{"docs/TROUBLESHOOTING.md", "docs/CXONE-TENANT.md"}
)

var (
	// A quote of the worker's output: a code span in double quotes, `"…"`;
	// … inside stands for a value.
	docQuoteRe = regexp.MustCompile("`\"([^`\"]+)\"`")
	// A metric, with the labels it is shown with: cxbridge_x{a="…",b="…"}.
	docMetricRe = regexp.MustCompile(`\bcxbridge_[a-z0-9_]*[a-z0-9]\b(\{[^}]*\})?`)
	docLabelRe  = regexp.MustCompile(`([a-z_]+)=`)
	// A setting: --name, CXBRIDGE_NAME.
	docFlagRe = regexp.MustCompile("(?:^|[\\s`(/])--([a-z][a-z0-9-]*[a-z0-9])")
	docEnvRe  = regexp.MustCompile(`\bCXBRIDGE_[A-Z0-9_]*[A-Z0-9]\b`)
	// A code span in Title Case of two words or more: a Kafka error title.
	docKafkaErrRe = regexp.MustCompile("`([A-Z][a-z]+(?: [A-Z][A-Za-z]+)+)`")
)

// sourceFiles returns the worker's Go sources (cmd/ and internal/, tests
// excluded), each as its text.
func sourceFiles(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, dir := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(path(dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files[filepath.ToSlash(rel)] = string(readFile(t, filepath.ToSlash(rel)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) < 20 {
		t.Fatalf("found %d Go source files under cmd/ and internal/", len(files))
	}
	return files
}

// quotedIn reports the source file that says quote: its parts between
// "…" appear in that file in order.
func quotedIn(files map[string]string, quote string) (string, bool) {
	parts := strings.Split(quote, "…")
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range files {
			if !yield(name) {
				return
			}
		}
	})
	for _, name := range names {
		src, at, ok := files[name], 0, true
		for _, part := range parts {
			if part == "" {
				continue
			}
			i := strings.Index(src[at:], part)
			if i < 0 {
				ok = false
				break
			}
			at += i + len(part)
		}
		if ok {
			return name, true
		}
	}
	return "", false
}

// Every log message, /readyz detail and error the operator docs quote is
// what the worker says: each quote (in `"…"`) is in the worker's sources.
func TestDocsQuoteTheWorker(t *testing.T) {
	t.Parallel()
	files := sourceFiles(t)
	for _, doc := range quotingDocs {
		text := string(readFile(t, doc))
		quotes := docQuoteRe.FindAllStringSubmatch(text, -1)
		if doc == "docs/TROUBLESHOOTING.md" && len(quotes) < 30 {
			t.Errorf("%s: found %d quotes of the worker, want the troubleshooting tables' (30 or more): is the quoting convention still `\"…\"`?", doc, len(quotes))
		}
		for _, q := range quotes {
			if strings.Trim(q[1], " …") == "" {
				continue // the convention itself: `"…"`
			}
			if _, ok := quotedIn(files, q[1]); !ok {
				t.Errorf("%s quotes %s, which no source file under cmd/ or internal/ says (the parts between … in order): reword the doc to what the worker says now", doc, q[0])
			}
		}
	}
}

// Every cxbridge_ metric the operator docs name is one the worker exports,
// with the labels it is shown with.
func TestDocsNameExportedMetrics(t *testing.T) {
	t.Parallel()
	exp := exportedMetrics(t)
	for _, doc := range operatorDocs {
		text := string(readFile(t, doc))
		found := 0
		for _, m := range docMetricRe.FindAllStringSubmatch(text, -1) {
			found++
			name := strings.TrimSuffix(m[0], m[1])
			family, ok := exp.family(name)
			labels := exp.labels[family]
			if !ok {
				t.Errorf("%s names %s, which the worker does not export", doc, name)
				continue
			}
			for _, l := range docLabelRe.FindAllStringSubmatch(m[1], -1) {
				if !slices.Contains(labels, l[1]) && !(l[1] == "le" && exp.histograms[family]) {
					t.Errorf("%s shows %s with label %q; its labels are %v", doc, m[0], l[1], labels)
				}
			}
		}
		if doc == "docs/TROUBLESHOOTING.md" && found < 10 {
			t.Errorf("%s: found %d metric names, want the troubleshooting tables' (10 or more)", doc, found)
		}
	}
}

// Every --setting and CXBRIDGE_ variable the operator docs name is one of
// a cxbridge command, from the built binary's --help; flags of other tools
// are listed here.
func TestDocsNameRealSettings(t *testing.T) {
	t.Parallel()
	foreign := map[string]bool{ // kafka-consumer-groups.sh
		"bootstrap-server": true, "describe": true, "group": true, "members": true, "state": true,
	}
	known, knownEnv := map[string]bool{"help": true}, map[string]bool{}
	for _, args := range [][]string{{"run"}, {"dev"}, {"sim"}, {"produce"}, {"dlq", "inspect"}, {"dlq", "replay"}} {
		help := helpOf(t, args...)
		for f := range help.byFlag {
			known[f] = true
		}
		for e := range help.byEnv {
			knownEnv[e] = true
		}
	}
	if !known["kafka-sasl-mechanism"] || !known["cxone-token-style"] {
		t.Fatalf("the commands' --help lists %d flags, without --kafka-sasl-mechanism or --cxone-token-style", len(known))
	}
	if !knownEnv["CXBRIDGE_CXONE_CLIENT_SECRET_FILE"] {
		t.Fatalf("the commands' --help lists %d variables, without CXBRIDGE_CXONE_CLIENT_SECRET_FILE", len(knownEnv))
	}
	for _, doc := range operatorDocs {
		text := string(readFile(t, doc))
		for _, m := range docFlagRe.FindAllStringSubmatch(text, -1) {
			if !known[m[1]] && !foreign[m[1]] {
				t.Errorf("%s names --%s, which no cxbridge command has", doc, m[1])
			}
		}
		for _, env := range docEnvRe.FindAllString(text, -1) {
			if !knownEnv[env] {
				t.Errorf("%s names %s, which no cxbridge command reads", doc, env)
			}
		}
	}
}

// Kafka errors the docs name (code spans in Title Case) are spelled as
// kafka-go prints them, so that an operator can search the log for them.
func TestDocsNameKafkaErrors(t *testing.T) {
	t.Parallel()
	titles := map[string]bool{}
	for code := -1; code < 200; code++ {
		if title := kafka.Error(code).Title(); title != "" {
			titles[title] = true
		}
	}
	if !titles["Group Authorization Failed"] {
		t.Fatal("kafka-go's error titles do not include Group Authorization Failed")
	}
	for _, doc := range operatorDocs {
		for _, m := range docKafkaErrRe.FindAllStringSubmatch(string(readFile(t, doc)), -1) {
			if !titles[m[1]] {
				t.Errorf("%s names the Kafka error `%s`, which kafka-go does not print", doc, m[1])
			}
		}
	}
}
