package deploytest

import (
	"encoding/json"
	"io/fs"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// --- what the worker exports -----------------------------------------------

// exported are the worker's metric families with their label names, read
// from the sources: every `Name: "cxbridge_…"` of a collector under
// internal/ (internal/telemetry/metrics.go, internal/bridge/worker.go, …),
// with the []string{…} of label names that follows it and the const labels.
// cxbridge_consumer_lag (internal/bridge/worker.go) is among them; the
// alerts and KEDA's lag trigger were written for it.
type exported struct {
	labels     map[string][]string // family → label names
	histograms map[string]bool
}

var (
	nameRe      = regexp.MustCompile(`Name:\s*"(cxbridge_[a-z0-9_]+)"`)
	labelsRe    = regexp.MustCompile(`^[^{}]*\}\s*,\s*\[\]string\{([^}]*)\}`)
	constRe     = regexp.MustCompile(`^[^{}]*ConstLabels:\s*prometheus\.Labels\{([^}]*)\}`)
	histogramRe = regexp.MustCompile(`HistogramOpts\{\s*Name:\s*"(cxbridge_[a-z0-9_]+)"`)
	quotedRe    = regexp.MustCompile(`"([a-z_]+)"\s*:?`)
)

func exportedMetrics(t *testing.T) exported {
	t.Helper()
	e := exported{labels: map[string][]string{}, histograms: map[string]bool{}}
	err := filepath.WalkDir(path("internal"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src := string(readFile(t, strings.TrimPrefix(filepath.ToSlash(p), filepath.ToSlash(root)+"/")))
		for _, m := range nameRe.FindAllStringSubmatchIndex(src, -1) {
			name := src[m[2]:m[3]]
			rest := src[m[1]:]
			if next := nameRe.FindStringIndex(rest); next != nil {
				rest = rest[:next[0]]
			}
			var labels []string
			if lm := labelsRe.FindStringSubmatch(rest); lm != nil {
				for _, q := range quotedRe.FindAllStringSubmatch(lm[1], -1) {
					labels = append(labels, q[1])
				}
			}
			if cm := constRe.FindStringSubmatch(rest); cm != nil {
				for _, q := range quotedRe.FindAllStringSubmatch(cm[1], -1) {
					if strings.HasSuffix(strings.TrimSpace(q[0]), ":") {
						labels = append(labels, q[1])
					}
				}
			}
			e.labels[name] = labels
		}
		for _, m := range histogramRe.FindAllStringSubmatch(src, -1) {
			e.histograms[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The families the deploy files rely on must be found, with their labels:
	// if the source layout changes so that this parser misses them, fail here
	// rather than pass on an empty list.
	for name, labels := range map[string][]string{
		"cxbridge_records_settled_total":            {"result"},
		"cxbridge_publish_attempts_total":           {"outcome"},
		"cxbridge_dead_letters_total":               {"reason"},
		"cxbridge_token_refreshes_total":            {"result"},
		"cxbridge_committed_offset":                 {"topic", "partition"},
		"cxbridge_consumer_lag":                     {"topic", "partition"},
		"cxbridge_breaker_state":                    nil,
		"cxbridge_in_flight_records":                nil,
		"cxbridge_end_to_end_latency_seconds":       nil,
		"cxbridge_publish_attempt_duration_seconds": nil,
	} {
		got, ok := e.labels[name]
		if !ok {
			t.Fatalf("the sources under internal/ define no metric %s (found %v)", name, slices.Sorted(maps.Keys(e.labels)))
		}
		if !slices.Equal(got, labels) {
			t.Fatalf("%s: labels %q read from the sources, want %q", name, got, labels)
		}
	}
	if !e.histograms["cxbridge_end_to_end_latency_seconds"] || !e.histograms["cxbridge_publish_attempt_duration_seconds"] {
		t.Fatalf("histograms %v: the latency metrics are not found as histograms", e.histograms)
	}
	return e
}

// family is the metric family of a series name (histogram suffixes removed),
// and the extra label the suffix brings.
func (e exported) family(series string) (string, bool) {
	if _, ok := e.labels[series]; ok {
		return series, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suf); ok && e.histograms[base] {
			return base, true
		}
	}
	return "", false
}

// foreignMetrics are the series the rules may use that the worker does not
// export: Prometheus's own `up`, kube-state-metrics' pod readiness.
var foreignMetrics = map[string][]string{
	"up":                    nil,
	"kube_pod_status_ready": {"namespace", "pod", "condition"},
}

// targetLabels are added by the scrape (compose and Kubernetes) or by
// histogram buckets.
var targetLabels = []string{"instance", "job", "namespace", "pod", "service", "container", "endpoint", "le"}

// --- PromQL, enough to find metric and label names ---------------------------

var (
	promStringRe   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'` + "|`[^`]*`")
	promVarRe      = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promRangeRe    = regexp.MustCompile(`\[[^\]]*\]`)
	promGroupRe    = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promSelectorRe = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}`)
	promMatcherRe  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)`)
	promIdentRe    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promKeywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "atan2": true, "group_left": true, "group_right": true}
)

// promRefs are the metric names of an expression, the labels its
// selectors match on (per metric) and the labels it groups by.
type promRefs struct {
	metrics  []string
	matchers map[string][]string // metric ("" for a bare {…}) → label names
	grouping []string
}

func parsePromQL(expr string) promRefs {
	r := promRefs{matchers: map[string][]string{}}
	s := promStringRe.ReplaceAllString(expr, `""`)
	s = promVarRe.ReplaceAllString(s, "x")
	s = promRangeRe.ReplaceAllString(s, " ")
	for _, m := range promGroupRe.FindAllStringSubmatch(s, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				r.grouping = append(r.grouping, l)
			}
		}
	}
	s = promGroupRe.ReplaceAllString(s, " ")
	for _, m := range promSelectorRe.FindAllStringSubmatch(s, -1) {
		for _, mm := range promMatcherRe.FindAllStringSubmatch(m[2], -1) {
			r.matchers[m[1]] = append(r.matchers[m[1]], mm[1])
		}
	}
	s = promSelectorRe.ReplaceAllStringFunc(s, func(sel string) string {
		name, _, _ := strings.Cut(sel, "{")
		return name + " "
	})
	for _, loc := range promIdentRe.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if strings.HasSuffix(tok, "(") { // a function or an aggregation
			continue
		}
		if loc[0] > 0 && (isDigit(s[loc[0]-1]) || s[loc[0]-1] == '.') { // 1e3, 5m
			continue
		}
		if promKeywords[strings.ToLower(tok)] {
			continue
		}
		r.metrics = append(r.metrics, tok)
	}
	return r
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// checkExpr checks that expr uses only metrics the worker exports (or the
// foreign ones above) and only labels those metrics have.
func checkExpr(t *testing.T, e exported, where, expr string) []string {
	t.Helper()
	r := parsePromQL(expr)
	if len(r.metrics) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	allowed := slices.Clone(targetLabels)
	var families []string
	labelsOf := func(series string) ([]string, bool) {
		if fam, ok := e.family(series); ok {
			return e.labels[fam], true
		}
		l, ok := foreignMetrics[series]
		return l, ok
	}
	for _, m := range r.metrics {
		labels, ok := labelsOf(m)
		if !ok {
			t.Errorf("%s: %s is not a metric the worker exports (%q)", where, m, expr)
			continue
		}
		families = append(families, m)
		allowed = append(allowed, labels...)
	}
	for metric, labels := range r.matchers {
		own := allowed
		if metric != "" {
			l, _ := labelsOf(metric)
			own = append(slices.Clone(targetLabels), l...)
		}
		for _, l := range labels {
			if l != "__name__" && !slices.Contains(own, l) {
				t.Errorf("%s: %s has no label %q (%q)", where, metric, l, expr)
			}
		}
	}
	for _, l := range r.grouping {
		if !slices.Contains(allowed, l) {
			t.Errorf("%s: groups by %q, a label none of %v has (%q)", where, l, families, expr)
		}
	}
	return families
}

func TestPromQLParser(t *testing.T) {
	r := parsePromQL(`histogram_quantile(0.99, sum by (le) (rate(cxbridge_x_bucket{instance=~"$instance", result!="ok"}[$__rate_interval]))) > 1e3 and on (job) up{job="a"} == 0 offset 5m`)
	if !slices.Equal(r.metrics, []string{"cxbridge_x_bucket", "up"}) {
		t.Errorf("metrics %q", r.metrics)
	}
	if !slices.Equal(r.grouping, []string{"le", "job"}) {
		t.Errorf("grouping %q", r.grouping)
	}
	if !slices.Equal(r.matchers["cxbridge_x_bucket"], []string{"instance", "result"}) || !slices.Equal(r.matchers["up"], []string{"job"}) {
		t.Errorf("matchers %v", r.matchers)
	}
}

// --- alert rules --------------------------------------------------------------

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// k8sOnlyAlerts need kube-state-metrics: in the PrometheusRule only.
var k8sOnlyAlerts = []string{"CxbridgePodNotReady"}

// requiredAlerts and the metric each is about.
var requiredAlerts = map[string]string{
	"CxbridgeDeadLetters":         "cxbridge_dead_letters_total",
	"CxbridgeBreakerOpen":         "cxbridge_breaker_state",
	"CxbridgeLagGrowing":          "cxbridge_consumer_lag",
	"CxbridgeTargetDown":          "up",
	"CxbridgeTokenRefreshFailing": "cxbridge_token_refreshes_total",
	"CxbridgePodNotReady":         "kube_pod_status_ready",
	"CxbridgeDLQRefusesRecords":   "cxbridge_dlq_refused_records",
}

func composeAlerts(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []ruleGroup `yaml:"groups"`
	}
	loadYAML(t, "deploy/prometheus/alerts.yml", &f)
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

func checkRules(t *testing.T, e exported, where string, rules []rule, required []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rules {
		name := r.Alert + r.Record
		if r.Alert == "" {
			t.Errorf("%s: rule %q is not an alert", where, name)
		}
		if seen[name] {
			t.Errorf("%s: alert %s twice", where, name)
		}
		seen[name] = true
		families := checkExpr(t, e, where+" "+name, r.Expr)
		if want, ok := requiredAlerts[name]; ok && !slices.ContainsFunc(families, func(f string) bool { fam, _ := e.family(f); return f == want || fam == want }) {
			t.Errorf("%s: %s does not use %s: %q", where, name, want, r.Expr)
		}
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: %s needs a severity label and summary and description annotations", where, name)
		}
		// `up{job="…"}` names the scrape job of the workers.
		for _, m := range regexp.MustCompile(`job="([^"]*)"`).FindAllStringSubmatch(r.Expr, -1) {
			if m[1] != "cxbridge" {
				t.Errorf("%s: %s selects job %q; the workers' job is cxbridge (compose job_name, Kubernetes Service name)", where, name, m[1])
			}
		}
	}
	for _, name := range required {
		if !seen[name] {
			t.Errorf("%s: no alert %s", where, name)
		}
	}
}

func TestComposeAlertRules(t *testing.T) {
	e := exportedMetrics(t)
	var required []string
	for name := range requiredAlerts {
		if !slices.Contains(k8sOnlyAlerts, name) {
			required = append(required, name)
		}
	}
	checkRules(t, e, "deploy/prometheus/alerts.yml", composeAlerts(t), required)
}

// --- Grafana ------------------------------------------------------------------

type datasource struct {
	Name string `yaml:"name"`
	UID  string `yaml:"uid"`
	Type string `yaml:"type"`
	URL  string `yaml:"url"`
}

func grafanaDatasource(t *testing.T) datasource {
	t.Helper()
	var f struct {
		Datasources []datasource `yaml:"datasources"`
	}
	loadYAML(t, "deploy/grafana/provisioning/datasources/prometheus.yml", &f)
	if len(f.Datasources) != 1 || f.Datasources[0].Type != "prometheus" || f.Datasources[0].UID == "" {
		t.Fatalf("grafana datasources %+v: want one prometheus datasource with a uid", f.Datasources)
	}
	return f.Datasources[0]
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Datasource *dsRef          `json:"datasource"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *dsRef `json:"datasource"`
	GridPos    struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		RefID      string `json:"refId"`
		Datasource *dsRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // rows
}

func TestGrafanaDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(readFile(t, "deploy/grafana/dashboards/cxbridge.json"), &d); err != nil {
		t.Fatalf("deploy/grafana/dashboards/cxbridge.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	ds := grafanaDatasource(t)
	e := exportedMetrics(t)

	var panels []panel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	ids := map[int]bool{}
	exprs := map[string][]string{} // panel title → queries
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Datasource == nil || p.Datasource.UID != ds.UID {
			t.Errorf("panel %q: datasource %+v, the provisioned one has uid %q", p.Title, p.Datasource, ds.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Datasource != nil && q.Datasource.UID != ds.UID {
				t.Errorf("panel %q: query datasource %+v", p.Title, q.Datasource)
			}
			checkExpr(t, e, "panel "+p.Title, q.Expr)
			exprs[p.Title] = append(exprs[p.Title], q.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Datasource != nil && v.Datasource.UID != ds.UID {
			t.Errorf("variable %s: datasource %+v", v.Name, v.Datasource)
		}
		if m := regexp.MustCompile(`label_values\((\w+),\s*(\w+)\)`).FindStringSubmatch(string(v.Query)); m != nil {
			checkExpr(t, e, "variable "+v.Name, m[1])
		}
	}

	// The panels asked for: a title word, and what its queries must say.
	want := []struct {
		title    string
		contains []string
	}{
		{"throughput", []string{"rate(cxbridge_records_settled_total", "by (result)"}},
		{"publish attempts", []string{"rate(cxbridge_publish_attempts_total", "by (outcome)"}},
		{"end-to-end latency", []string{"histogram_quantile(0.5,", "histogram_quantile(0.99,", "cxbridge_end_to_end_latency_seconds_bucket", "by (le)"}},
		{"attempt duration", []string{"histogram_quantile(0.99,", "cxbridge_publish_attempt_duration_seconds_bucket"}},
		{"breaker", []string{"cxbridge_breaker_state"}},
		{"committed offset", []string{"cxbridge_committed_offset", "partition"}},
		{"dead letters", []string{"cxbridge_dead_letters_total", "by (reason)"}},
		{"token refreshes", []string{"cxbridge_token_refreshes_total", "by (result)"}},
		{"in-flight", []string{"cxbridge_in_flight_records"}},
	}
	for _, w := range want {
		var found []string
		for title, qs := range exprs {
			if strings.Contains(strings.ToLower(title), w.title) {
				found = append(found, strings.Join(qs, "\n"))
			}
		}
		if len(found) != 1 {
			t.Errorf("%d panels titled with %q, want 1", len(found), w.title)
			continue
		}
		for _, c := range w.contains {
			if !strings.Contains(found[0], c) {
				t.Errorf("panel %q: queries lack %q:\n%s", w.title, c, found[0])
			}
		}
	}
}
