package deploytest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// --- deploy/k8s as kustomize builds it: the generated ConfigMaps, GOMEMLIMIT, image tags

type configMapGenerator struct {
	Name    string   `yaml:"name"`
	Envs    []string `yaml:"envs"`
	Files   []string `yaml:"files"`
	Options struct {
		Labels                map[string]string `yaml:"labels"`
		DisableNameSuffixHash bool              `yaml:"disableNameSuffixHash"`
	} `yaml:"options"`
}

type kustomization struct {
	Resources          []string             `yaml:"resources"`
	ConfigMapGenerator []configMapGenerator `yaml:"configMapGenerator"`
	GeneratorOptions   struct {
		DisableNameSuffixHash bool `yaml:"disableNameSuffixHash"`
	} `yaml:"generatorOptions"`
	Images []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
		Digest  string `yaml:"digest"`
	} `yaml:"images"`
}

func loadKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	var k kustomization
	loadYAML(t, dir+"/kustomization.yaml", &k)
	return k
}

// readEnvFile reads a kustomize env file: KEY=VALUE lines, blank lines and
// # comments skipped, the value taken as is (no quotes, no inline comment).
func readEnvFile(t *testing.T, rel string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, rel)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			t.Fatalf("%s:%d: %q is not KEY=VALUE", rel, n, line)
		}
		if strings.Contains(v, " #") || strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "'") {
			t.Errorf("%s:%d: %s=%s: kustomize takes the value as is (quotes and a trailing comment included)", rel, n, k, v)
		}
		if _, dup := out[k]; dup {
			t.Errorf("%s:%d: %s twice", rel, n, k)
		}
		out[k] = v
	}
	return out
}

// workerConfigMap is the worker's ConfigMap as deploy/k8s/kustomization.yaml
// generates it: its name (before kustomize's hash suffix) and data.
func workerConfigMap(t *testing.T) (string, map[string]string) {
	t.Helper()
	k := loadKustomization(t, "deploy/k8s")
	if len(k.ConfigMapGenerator) != 1 {
		t.Fatalf("deploy/k8s/kustomization.yaml: %d configMapGenerator entries, want 1 (the worker's settings)", len(k.ConfigMapGenerator))
	}
	g := k.ConfigMapGenerator[0]
	if len(g.Envs) != 1 || len(g.Files) != 0 {
		t.Fatalf("deploy/k8s/kustomization.yaml: the ConfigMap %s must come from one env file (envs), got %+v", g.Name, g)
	}
	return g.Name, readEnvFile(t, "deploy/k8s/"+g.Envs[0])
}

// The worker's ConfigMap is generated, with kustomize's content hash in its
// name, so that a changed setting is a changed pod template; nothing under
// deploy/k8s declares it by hand.
func TestK8sConfigMapGenerated(t *testing.T) {
	for _, o := range loadK8s(t) {
		if o.Kind == "ConfigMap" {
			t.Errorf("%s declares ConfigMap %s: generate it (configMapGenerator) so that changing it rolls the pods", o.File, o.Metadata.Name)
		}
	}
	k := loadKustomization(t, "deploy/k8s")
	name, data := workerConfigMap(t)
	g := k.ConfigMapGenerator[0]
	if g.Options.DisableNameSuffixHash || k.GeneratorOptions.DisableNameSuffixHash {
		t.Error("deploy/k8s/kustomization.yaml: the worker's ConfigMap needs its hash suffix: without it a change does not roll the pods")
	}
	w := loadWorker(t, loadK8s(t))
	var refs []string
	for _, ef := range w.c.EnvFrom {
		if ef.ConfigMapRef != nil {
			refs = append(refs, ef.ConfigMapRef.Name)
		}
	}
	if !slices.Equal(refs, []string{name}) {
		t.Errorf("deployment: envFrom ConfigMaps %q, the generated one is %q", refs, name)
	}
	if len(data) < 5 {
		t.Errorf("the worker's ConfigMap has %d settings: %v", len(data), data)
	}
}

// envRef is a container's env entry with the valueFrom kinds read here.
type envRef struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		ResourceFieldRef *struct {
			ContainerName string `yaml:"containerName"`
			Resource      string `yaml:"resource"`
			Divisor       string `yaml:"divisor"`
		} `yaml:"resourceFieldRef"`
	} `yaml:"valueFrom"`
}

// workerEnv is the env of the Deployment's worker container.
func workerEnv(t *testing.T) []envRef {
	t.Helper()
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Env []envRef `yaml:"env"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	one(t, loadK8s(t), "Deployment").decode(t, &d)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("deployment: want one container")
	}
	return d.Spec.Template.Spec.Containers[0].Env
}

// gomemlimit is the GOMEMLIMIT the worker's container gets, in bytes: a
// value, or read from the container's own resources (resourceFieldRef).
func gomemlimit(t *testing.T, w k8sWorker) int64 {
	t.Helper()
	for _, e := range workerEnv(t) {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		if e.ValueFrom == nil {
			return quantity(t, "GOMEMLIMIT", e.Value)
		}
		ref := e.ValueFrom.ResourceFieldRef
		if ref == nil {
			t.Fatal("deployment: GOMEMLIMIT valueFrom must be a resourceFieldRef")
		}
		if ref.ContainerName != "" && ref.ContainerName != w.c.Name {
			t.Errorf("deployment: GOMEMLIMIT from container %q's resources, the worker is %q", ref.ContainerName, w.c.Name)
		}
		var q string
		switch ref.Resource {
		case "limits.memory":
			q = w.c.Resources.Limits["memory"]
		case "requests.memory":
			q = w.c.Resources.Requests["memory"]
		default:
			t.Fatalf("deployment: GOMEMLIMIT from %q, want limits.memory or requests.memory", ref.Resource)
		}
		// GOMEMLIMIT without a unit is bytes: the divisor must leave bytes.
		if ref.Divisor != "" && ref.Divisor != "1" {
			t.Fatalf("deployment: GOMEMLIMIT from %s with divisor %q: Go reads the number as bytes, so the divisor must be 1", ref.Resource, ref.Divisor)
		}
		return quantity(t, "deploy/k8s", q)
	}
	t.Fatal("deployment: no GOMEMLIMIT for the worker")
	return 0
}

// GOMEMLIMIT follows the pod's resources: a changed memory size cannot leave
// it behind (TestK8sMemoryLimit checks the figures).
func TestK8sGOMEMLIMITFollowsResources(t *testing.T) {
	w := loadWorker(t, loadK8s(t))
	for _, e := range workerEnv(t) {
		if e.Name == "GOMEMLIMIT" && e.ValueFrom == nil {
			t.Errorf("deployment: GOMEMLIMIT is the fixed %q: take it from the container's resources (resourceFieldRef) so that it follows them", e.Value)
		}
	}
	if got := gomemlimit(t, w); got != quantity(t, "deploy/k8s", w.c.Resources.Requests["memory"]) && got != quantity(t, "deploy/k8s", w.c.Resources.Limits["memory"]) {
		t.Errorf("deployment: GOMEMLIMIT %d is neither the memory request nor the limit", got)
	}
}

// The Grafana dashboards reach a cluster as a ConfigMap labelled for
// Grafana's sidecar, generated from every deploy/grafana/dashboards/*.json.
func TestK8sGrafanaDashboards(t *testing.T) {
	if k := loadKustomization(t, "deploy/k8s"); !slices.Contains(k.Resources, "../grafana") {
		t.Errorf("deploy/k8s/kustomization.yaml: resources %q lack ../grafana (the dashboards' ConfigMap)", k.Resources)
	}
	k := loadKustomization(t, "deploy/grafana")
	if len(k.ConfigMapGenerator) != 1 {
		t.Fatalf("deploy/grafana/kustomization.yaml: %d configMapGenerator entries, want 1", len(k.ConfigMapGenerator))
	}
	g := k.ConfigMapGenerator[0]
	if g.Options.Labels["grafana_dashboard"] != "1" {
		t.Errorf("deploy/grafana/kustomization.yaml: %s is not labelled grafana_dashboard=1 (the sidecar's default label and value): %v", g.Name, g.Options.Labels)
	}
	files, err := filepath.Glob(path("deploy/grafana/dashboards/*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards under deploy/grafana/dashboards (%v)", err)
	}
	var want []string
	for _, f := range files {
		want = append(want, "dashboards/"+filepath.Base(f))
	}
	if got := slices.Sorted(slices.Values(g.Files)); !slices.Equal(got, want) {
		t.Errorf("deploy/grafana/kustomization.yaml: files %q, want every dashboard: %q", got, want)
	}
}

// Every image is pinned: a tag other than latest, or a digest.
func TestNoLatestImages(t *testing.T) {
	pinned := func(where, image string) {
		if strings.Contains(image, "@sha256:") {
			return
		}
		last := image[strings.LastIndex(image, "/")+1:]
		_, tag, ok := strings.Cut(last, ":")
		if !ok || tag == "" || tag == "latest" {
			t.Errorf("%s: image %q is not pinned to a version", where, image)
		}
	}
	k := loadKustomization(t, "deploy/k8s")
	for _, img := range k.Images {
		if img.Digest == "" && (img.NewTag == "" || img.NewTag == "latest") {
			t.Errorf("deploy/k8s/kustomization.yaml: image %s gets tag %q, want a release (or a digest)", img.Name, img.NewTag)
		}
	}
	for _, o := range loadK8s(t) {
		if o.Kind != "Deployment" {
			continue
		}
		var d deployment
		o.decode(t, &d)
		for _, c := range d.Spec.Template.Spec.Containers {
			if !slices.ContainsFunc(k.Images, func(i struct {
				Name    string `yaml:"name"`
				NewName string `yaml:"newName"`
				NewTag  string `yaml:"newTag"`
				Digest  string `yaml:"digest"`
			}) bool {
				return i.Name == c.Image
			}) {
				pinned(o.File, c.Image)
			}
		}
	}
	for name, svc := range loadCompose(t).Services {
		pinned("docker-compose.yml "+name, svc.Image)
	}
}

// kustomizeCmd is a kustomize build command, or nil when neither kustomize
// nor kubectl (which embeds it) is installed.
func kustomizeCmd(dir string) *exec.Cmd {
	if p, err := exec.LookPath("kustomize"); err == nil {
		return exec.Command(p, "build", dir)
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return exec.Command(p, "kustomize", dir)
	}
	return nil
}

// build renders a kustomization directory into its objects.
func build(t *testing.T, dir string) []map[string]any {
	t.Helper()
	cmd := kustomizeCmd(dir)
	if cmd == nil {
		t.Skip("neither kustomize nor kubectl is installed: the rendered manifests are not checked (the other TestK8s* tests read the files)")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	var objs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return objs
}

func dig(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// rendered finds the objects the build made: the Deployment, the worker's
// ConfigMap (by its name's prefix) and the dashboards' ConfigMap.
type rendered struct {
	deployment, config, dashboards map[string]any
}

func renderK8s(t *testing.T, dir string) rendered {
	t.Helper()
	var r rendered
	for _, o := range build(t, dir) {
		name, _ := dig(o, "metadata", "name").(string)
		switch {
		case o["kind"] == "Deployment":
			r.deployment = o
		case o["kind"] == "ConfigMap" && dig(o, "metadata", "labels", "grafana_dashboard") == "1":
			r.dashboards = o
		case o["kind"] == "ConfigMap" && strings.HasPrefix(name, "cxbridge-config-"):
			r.config = o
		}
	}
	if r.deployment == nil || r.config == nil || r.dashboards == nil {
		t.Fatalf("kustomize build %s: want a Deployment, a ConfigMap cxbridge-config-<hash> and a dashboards ConfigMap, got %+v", dir, r)
	}
	return r
}

func (r rendered) configRef() any {
	return dig(r.deployment, "spec", "template", "spec", "containers", 0, "envFrom", 0, "configMapRef", "name")
}

// `kubectl apply -k deploy/k8s` as a cluster would get it: the Deployment
// refers to the generated ConfigMap by its hashed name, a changed setting
// changes that name (so the pods roll), the dashboards' ConfigMap carries
// the dashboard JSON as it is in the repository, and GOMEMLIMIT is read from
// the container's resources.
func TestK8sKustomizeBuild(t *testing.T) {
	r := renderK8s(t, path("deploy/k8s"))
	name := dig(r.config, "metadata", "name")
	if got := r.configRef(); got != name {
		t.Errorf("the Deployment's envFrom names ConfigMap %v, kustomize generated %v", got, name)
	}
	if ns := dig(r.dashboards, "metadata", "namespace"); ns != "cxbridge" {
		t.Errorf("the dashboards' ConfigMap is in namespace %v, want cxbridge's", ns)
	}
	if got, want := dig(r.dashboards, "data", "cxbridge.json"), string(readFile(t, "deploy/grafana/dashboards/cxbridge.json")); got != want {
		t.Error("the dashboards' ConfigMap does not hold deploy/grafana/dashboards/cxbridge.json as it is")
	}
	env, _ := dig(r.deployment, "spec", "template", "spec", "containers", 0, "env").([]any)
	if !slices.ContainsFunc(env, func(e any) bool {
		return dig(e, "name") == "GOMEMLIMIT" && dig(e, "valueFrom", "resourceFieldRef", "resource") != nil
	}) {
		t.Errorf("the rendered Deployment's env %v sets no GOMEMLIMIT from its resources", env)
	}

	// A changed setting: a copy of deploy/ with one value changed.
	tmp := t.TempDir()
	for _, dir := range []string{"k8s", "grafana"} {
		if err := os.CopyFS(filepath.Join(tmp, dir), os.DirFS(path("deploy/"+dir))); err != nil {
			t.Fatal(err)
		}
	}
	_, cfg := workerConfigMap(t)
	envFile := filepath.Join(tmp, "k8s", loadKustomization(t, "deploy/k8s").ConfigMapGenerator[0].Envs[0])
	raw, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	old := "CXBRIDGE_LOG_LEVEL=" + cfg["CXBRIDGE_LOG_LEVEL"] + "\n"
	if !bytes.Contains(raw, []byte(old)) {
		t.Fatalf("%s has no line %q to change", envFile, old)
	}
	if err := os.WriteFile(envFile, bytes.Replace(raw, []byte(old), []byte("CXBRIDGE_LOG_LEVEL=debug\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	changed := renderK8s(t, filepath.Join(tmp, "k8s"))
	if changed.configRef() == r.configRef() {
		t.Errorf("after a change of CXBRIDGE_LOG_LEVEL the Deployment still names ConfigMap %v: the pods would not roll", r.configRef())
	}
	if got := dig(changed.config, "data", "CXBRIDGE_LOG_LEVEL"); got != "debug" {
		t.Errorf("the changed ConfigMap has CXBRIDGE_LOG_LEVEL %v", got)
	}
}
