package deploytest

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// --- deploy/k8s ----------------------------------------------------------------

// k8sObject is one document of a manifest.
type k8sObject struct {
	File       string
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	node yaml.Node
}

func (o *k8sObject) decode(t *testing.T, v any) {
	t.Helper()
	if err := o.node.Decode(v); err != nil {
		t.Fatalf("%s: %s %s: %v", o.File, o.Kind, o.Metadata.Name, err)
	}
}

// loadK8s reads every document of every YAML file under deploy/k8s.
func loadK8s(t *testing.T) []*k8sObject {
	t.Helper()
	files, err := filepath.Glob(path("deploy/k8s/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var objs []*k8sObject
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			o := &k8sObject{File: filepath.Base(f)}
			err := dec.Decode(&o.node)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.node.Kind == 0 || len(o.node.Content) == 0 {
				continue // an empty document
			}
			o.decode(t, o)
			if o.Kind == "" || o.APIVersion == "" {
				t.Fatalf("%s: a document without apiVersion and kind", o.File)
			}
			objs = append(objs, o)
		}
	}
	if len(objs) == 0 {
		t.Fatal("no manifests under deploy/k8s")
	}
	return objs
}

// one returns the only object of a kind.
func one(t *testing.T, objs []*k8sObject, kind string) *k8sObject {
	t.Helper()
	var found []*k8sObject
	for _, o := range objs {
		if o.Kind == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("deploy/k8s: %d objects of kind %s, want 1", len(found), kind)
	}
	return found[0]
}

type deployment struct {
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string     `yaml:"name"`
		Value     string     `yaml:"value"`
		ValueFrom *yaml.Node `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// port resolves a port number or a container port's name.
func (c *container) port(t *testing.T, p string) int {
	t.Helper()
	if n, err := strconv.Atoi(p); err == nil {
		return n
	}
	for _, cp := range c.Ports {
		if cp.Name == p {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p)
	return 0
}

// k8sWorker is the Deployment's worker container and the settings the
// ConfigMap gives it.
type k8sWorker struct {
	dep       deployment
	c         container
	configMap map[string]string
	env       map[string]string // the ConfigMap's variables, then the container's env values
}

func (w k8sWorker) get(t *testing.T, flag string) string {
	t.Helper()
	return effective(helpOf(t, "run"), nil, w.env, flag)
}

func loadWorker(t *testing.T, objs []*k8sObject) k8sWorker {
	t.Helper()
	var w k8sWorker
	one(t, objs, "Deployment").decode(t, &w.dep)
	cs := w.dep.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("deployment: %d containers, want 1", len(cs))
	}
	w.c = cs[0]
	cmName, cmData := workerConfigMap(t) // generated by kustomization.yaml (kustomize_test.go)
	w.configMap = cmData
	w.env = map[string]string{}
	usesCM := false
	for _, ef := range w.c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if ef.ConfigMapRef.Name != cmName {
				t.Errorf("deployment: envFrom ConfigMap %q, the ConfigMap is %q", ef.ConfigMapRef.Name, cmName)
			}
			usesCM = true
		}
		if ef.SecretRef != nil {
			t.Error("deployment: envFrom a Secret puts secrets in the environment; mount them as files")
		}
	}
	if !usesCM {
		t.Error("deployment: the worker takes no envFrom the ConfigMap")
	}
	for k, v := range cmData {
		w.env[k] = v
	}
	for _, e := range w.c.Env {
		if e.ValueFrom == nil {
			w.env[e.Name] = e.Value
		}
	}
	return w
}

func TestK8sKustomization(t *testing.T) {
	var k struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Namespace  string   `yaml:"namespace"`
		Resources  []string `yaml:"resources"`
		Images     []struct {
			Name string `yaml:"name"`
		} `yaml:"images"`
	}
	loadYAML(t, "deploy/k8s/kustomization.yaml", &k)
	if k.Kind != "Kustomization" || !strings.HasPrefix(k.APIVersion, "kustomize.config.k8s.io/") {
		t.Errorf("kustomization.yaml: %s %s", k.APIVersion, k.Kind)
	}
	files, _ := filepath.Glob(path("deploy/k8s/*.yaml"))
	for _, f := range files {
		base := filepath.Base(f)
		listed := slices.Contains(k.Resources, base)
		switch {
		case base == "kustomization.yaml":
		case strings.Contains(base, ".example."):
			if listed {
				t.Errorf("kustomization.yaml applies %s: an example must never reach a cluster", base)
			}
		case !listed:
			t.Errorf("kustomization.yaml does not list %s", base)
		}
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(path("deploy/k8s/" + r)); err != nil {
			t.Errorf("kustomization.yaml: resource %s: %v", r, err)
		}
	}
	objs := loadK8s(t)
	ns := one(t, objs, "Namespace")
	if ns.Metadata.Name != k.Namespace {
		t.Errorf("namespace.yaml creates %q, kustomization.yaml deploys to %q", ns.Metadata.Name, k.Namespace)
	}
	w := loadWorker(t, objs)
	if !slices.ContainsFunc(k.Images, func(i struct {
		Name string `yaml:"name"`
	}) bool {
		return i.Name == w.c.Image
	}) {
		t.Errorf("kustomization.yaml's images do not set the Deployment's image %q", w.c.Image)
	}
}

func TestK8sDeployment(t *testing.T) {
	objs := loadK8s(t)
	w := loadWorker(t, objs)
	dep, c := w.dep, w.c
	if dep.Spec.Replicas != nil {
		t.Errorf("deployment: replicas %d: KEDA's HPA owns the count, and every apply would reset it", *dep.Spec.Replicas)
	}
	if !subset(dep.Spec.Selector.MatchLabels, dep.Spec.Template.Metadata.Labels) || len(dep.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("deployment: selector %v does not select its pods %v", dep.Spec.Selector.MatchLabels, dep.Spec.Template.Metadata.Labels)
	}
	if len(c.Command) != 0 || !slices.Equal(c.Args, []string{"run"}) {
		t.Errorf("deployment: command %q args %q, want the image's entrypoint with args [run]", c.Command, c.Args)
	}

	// The probes are the admin server's endpoints on the admin port.
	adminPort := portOf(t, w.get(t, "admin-addr"))
	admin := string(readFile(t, "internal/admin/admin.go"))
	for name, pr := range map[string]struct {
		p    *probe
		path string
	}{"liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("deployment: no %s httpGet probe", name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("deployment: %s probe on %s, want %s", name, pr.p.HTTPGet.Path, pr.path)
		}
		if !strings.Contains(admin, `"GET `+pr.p.HTTPGet.Path+`"`) {
			t.Errorf("deployment: %s probe on %s, which internal/admin does not serve", name, pr.p.HTTPGet.Path)
		}
		if got := c.port(t, pr.p.HTTPGet.Port); got != adminPort {
			t.Errorf("deployment: %s probe on port %d, the admin server listens on %d", name, got, adminPort)
		}
	}

	// SIGTERM → the shutdown timeout → SIGKILL after the grace period.
	shutdown, err := time.ParseDuration(w.get(t, "shutdown-timeout"))
	if err != nil {
		t.Fatal(err)
	}
	grace := dep.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second < shutdown+consumer.LeaveTimeout {
		t.Errorf("deployment: terminationGracePeriodSeconds %s must be at least the shutdown timeout %s and %s to commit and leave the group", ptr(grace), shutdown, consumer.LeaveTimeout)
	} else if *grace != 45 {
		t.Errorf("deployment: terminationGracePeriodSeconds %d, want 45", *grace)
	}

	for _, kind := range []string{"requests", "limits"} {
		m := c.Resources.Requests
		if kind == "limits" {
			m = c.Resources.Limits
		}
		if m["cpu"] == "" || m["memory"] == "" {
			t.Errorf("deployment: resources.%s %v, want cpu and memory", kind, m)
		}
	}

	// Security.
	pod := dep.Spec.Template.Spec.SecurityContext
	sc := c.SecurityContext
	if !isTrue(pod.RunAsNonRoot) && !isTrue(sc.RunAsNonRoot) {
		t.Error("deployment: runAsNonRoot is not set")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("deployment: readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("deployment: allowPrivilegeEscalation is not false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("deployment: capabilities drop %q, want ALL", sc.Capabilities.Drop)
	}
	if pod.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("deployment: seccompProfile %q, want RuntimeDefault (the restricted Pod Security Standard)", pod.SeccompProfile.Type)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func subset(sub, of map[string]string) bool {
	for k, v := range sub {
		if of[k] != v {
			return false
		}
	}
	return true
}

// TestK8sSettings: every variable of the ConfigMap and the container is a
// real setting of `cxbridge run`, with a value of the right kind, and no
// secret is among them.
func TestK8sSettings(t *testing.T) {
	objs := loadK8s(t)
	w := loadWorker(t, objs)
	run := helpOf(t, "run")
	check := func(where, name, value string, fromField bool) {
		st, ok := run.byEnv[name]
		if !ok {
			t.Errorf("%s: %s is not a setting of `cxbridge run` (see cxbridge run --help)", where, name)
			return
		}
		if name == st.Env && st.FileEnv != "" {
			t.Errorf("%s: %s is a secret: give it as a file (%s)", where, name, st.FileEnv)
			return
		}
		if !fromField && name == st.Env {
			if pr := checkValue(where, st, value); pr != "" {
				t.Error(pr)
			}
		}
	}
	for k, v := range w.configMap {
		if !strings.HasPrefix(k, "CXBRIDGE_") {
			t.Errorf("configmap: %s is no cxbridge setting", k)
			continue
		}
		if strings.HasSuffix(k, "_FILE") {
			t.Errorf("configmap: %s: secret files are the Deployment's business", k)
		}
		check("configmap", k, v, false)
	}
	for _, e := range w.c.Env {
		if strings.HasPrefix(e.Name, "CXBRIDGE_") {
			check("deployment env", e.Name, e.Value, e.ValueFrom != nil)
		}
	}
	// The values the worker cannot start without.
	for _, flag := range []string{"kafka-brokers", "cxone-base-url", "cxone-client-id"} {
		if w.get(t, flag) == "" {
			t.Errorf("the worker gets no --%s", flag)
		}
	}
	if u, err := url.Parse(w.get(t, "cxone-base-url")); err != nil || u.Scheme != "https" {
		t.Errorf("configmap: CXone base URL %q must be https", w.get(t, "cxone-base-url"))
	}
	if w.get(t, "cxone-allow-http") == "true" {
		t.Error("configmap: CXBRIDGE_CXONE_ALLOW_HTTP is for the simulator, not a cluster")
	}
}

// TestK8sClientSecret: the client secret reaches the worker as a file from
// the Secret, and the example Secret has the same name and key.
func TestK8sClientSecret(t *testing.T) {
	objs := loadK8s(t)
	w := loadWorker(t, objs)
	file := w.env["CXBRIDGE_CXONE_CLIENT_SECRET_FILE"]
	if file == "" {
		t.Fatal("deployment: no CXBRIDGE_CXONE_CLIENT_SECRET_FILE")
	}
	var secretName, key string
	for _, m := range w.c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("deployment: the secret volume %s is not mounted readOnly", m.Name)
		}
		for _, v := range w.dep.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			secretName, key = v.Secret.SecretName, rel // without items, the file is named by the key
			if len(v.Secret.Items) > 0 {
				key = ""
				for _, it := range v.Secret.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
				if key == "" {
					t.Errorf("deployment: the secret volume %s has no item at %s", v.Name, rel)
				}
			}
		}
	}
	if secretName == "" {
		t.Fatalf("deployment: %s is on no mounted Secret volume", file)
	}

	var example struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Kind       string            `yaml:"kind"`
		StringData map[string]string `yaml:"stringData"`
		Data       map[string]string `yaml:"data"`
	}
	loadYAML(t, "deploy/k8s/secret.example.yaml", &example)
	if example.Kind != "Secret" || example.Metadata.Name != secretName {
		t.Errorf("secret.example.yaml: %s %q, the Deployment mounts Secret %q", example.Kind, example.Metadata.Name, secretName)
	}
	v, ok := example.StringData[key]
	if !ok {
		t.Errorf("secret.example.yaml: no stringData key %q", key)
	}
	if !strings.Contains(v, "REPLACE-ME") || len(example.Data) != 0 {
		t.Errorf("secret.example.yaml: the value must be an obvious placeholder (REPLACE-ME…), got %q", v)
	}
	if !strings.Contains(string(readFile(t, "deploy/k8s/secret.example.yaml")), "EXAMPLE ONLY") {
		t.Error("secret.example.yaml is not marked EXAMPLE ONLY")
	}
}

func TestK8sServiceAndPDB(t *testing.T) {
	objs := loadK8s(t)
	w := loadWorker(t, objs)
	podLabels := w.dep.Spec.Template.Metadata.Labels
	adminPort := portOf(t, w.get(t, "admin-addr"))

	svcObj := one(t, objs, "Service")
	var svc struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	svcObj.decode(t, &svc)
	if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, podLabels) {
		t.Errorf("service: selector %v does not select the worker pods %v", svc.Spec.Selector, podLabels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].Port != adminPort {
		t.Fatalf("service: ports %+v, want one named metrics on %d", svc.Spec.Ports, adminPort)
	}
	if tp := svc.Spec.Ports[0].TargetPort; tp != "" && w.c.port(t, tp) != adminPort {
		t.Errorf("service: targetPort %s is not the admin port %d", tp, adminPort)
	}
	// The alerts' up{job="cxbridge"}: the Prometheus Operator names the job
	// after the Service.
	if svcObj.Metadata.Name != "cxbridge" {
		t.Errorf("service %q: the alerts select job=\"cxbridge\", which is the Service's name", svcObj.Metadata.Name)
	}

	smObj := one(t, objs, "ServiceMonitor")
	var sm struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Endpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	smObj.decode(t, &sm)
	if smObj.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("servicemonitor: apiVersion %s", smObj.APIVersion)
	}
	if len(sm.Spec.Selector.MatchLabels) == 0 || !subset(sm.Spec.Selector.MatchLabels, svcObj.Metadata.Labels) {
		t.Errorf("servicemonitor: selector %v does not select the Service %v", sm.Spec.Selector.MatchLabels, svcObj.Metadata.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || (sm.Spec.Endpoints[0].Path != "" && sm.Spec.Endpoints[0].Path != "/metrics") {
		t.Errorf("servicemonitor: endpoints %+v, want port metrics, /metrics", sm.Spec.Endpoints)
	}

	var pdb struct {
		Spec struct {
			MaxUnavailable             *int   `yaml:"maxUnavailable"`
			UnhealthyPodEvictionPolicy string `yaml:"unhealthyPodEvictionPolicy"`
			Selector                   struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
		} `yaml:"spec"`
	}
	pdbObj := one(t, objs, "PodDisruptionBudget")
	pdbObj.decode(t, &pdb)
	if pdbObj.APIVersion != "policy/v1" {
		t.Errorf("pdb: apiVersion %s, want policy/v1", pdbObj.APIVersion)
	}
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != 1 {
		t.Errorf("pdb: maxUnavailable %s, want 1", ptr(pdb.Spec.MaxUnavailable))
	}
	if pdb.Spec.UnhealthyPodEvictionPolicy != "AlwaysAllow" {
		t.Errorf("pdb: unhealthyPodEvictionPolicy %q, want AlwaysAllow (a not-ready pod must never block a drain)", pdb.Spec.UnhealthyPodEvictionPolicy)
	}
	if len(pdb.Spec.Selector.MatchLabels) == 0 || !subset(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("pdb: selector %v does not select the worker pods %v", pdb.Spec.Selector.MatchLabels, podLabels)
	}
}

func TestK8sKEDA(t *testing.T) {
	objs := loadK8s(t)
	w := loadWorker(t, objs)
	soObj := one(t, objs, "ScaledObject")
	if soObj.APIVersion != "keda.sh/v1alpha1" {
		t.Errorf("scaledobject: apiVersion %s, want keda.sh/v1alpha1", soObj.APIVersion)
	}
	var so struct {
		Spec struct {
			ScaleTargetRef struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"scaleTargetRef"`
			MinReplicaCount *int `yaml:"minReplicaCount"`
			MaxReplicaCount *int `yaml:"maxReplicaCount"`
			Advanced        struct {
				HPA struct {
					Behavior struct {
						ScaleUp struct {
							Policies []struct {
								Type          string `yaml:"type"`
								Value         int    `yaml:"value"`
								PeriodSeconds int    `yaml:"periodSeconds"`
							} `yaml:"policies"`
						} `yaml:"scaleUp"`
					} `yaml:"behavior"`
				} `yaml:"horizontalPodAutoscalerConfig"`
			} `yaml:"advanced"`
			Triggers []struct {
				Type     string            `yaml:"type"`
				Metadata map[string]string `yaml:"metadata"`
			} `yaml:"triggers"`
		} `yaml:"spec"`
	}
	soObj.decode(t, &so)
	dep := one(t, objs, "Deployment")
	if so.Spec.ScaleTargetRef.Name != dep.Metadata.Name || (so.Spec.ScaleTargetRef.Kind != "" && so.Spec.ScaleTargetRef.Kind != "Deployment") {
		t.Errorf("scaledobject: scales %+v, the Deployment is %q", so.Spec.ScaleTargetRef, dep.Metadata.Name)
	}
	partitions := inputPartitions(t)
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != 1 {
		t.Errorf("scaledobject: minReplicaCount %s, want 1", ptr(so.Spec.MinReplicaCount))
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount > partitions || *so.Spec.MaxReplicaCount != 6 {
		t.Errorf("scaledobject: maxReplicaCount %s, want 6 and at most the input topic's %d partitions", ptr(so.Spec.MaxReplicaCount), partitions)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
		t.Fatalf("scaledobject: triggers %+v, want one kafka trigger", so.Spec.Triggers)
	}
	md := so.Spec.Triggers[0].Metadata
	for key, flag := range map[string]string{
		"bootstrapServers":  "kafka-brokers",
		"consumerGroup":     "kafka-group-id",
		"topic":             "kafka-input-topic",
		"offsetResetPolicy": "kafka-start-offset",
	} {
		if got, want := md[key], w.get(t, flag); got != want {
			t.Errorf("scaledobject: %s %q, the worker's --%s is %q", key, got, flag, want)
		}
	}
	if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n <= 0 {
		t.Errorf("scaledobject: lagThreshold %q, want a positive number", md["lagThreshold"])
	}
	if md["allowIdleConsumers"] == "true" {
		t.Error("scaledobject: allowIdleConsumers would scale past the partition count")
	}
	if md["limitToPartitionsWithLag"] != "true" {
		t.Errorf("scaledobject: limitToPartitionsWithLag %q, want \"true\": no member for a partition with nothing to read", md["limitToPartitionsWithLag"])
	}
	up := so.Spec.Advanced.HPA.Behavior.ScaleUp.Policies
	if len(up) != 1 || up[0].Type != "Pods" || up[0].Value < 1 || up[0].Value > 2 || up[0].PeriodSeconds < 30 {
		t.Errorf("scaledobject: scale-up policies %+v, want at most 2 pods per period of at least 30 s (each step is a rebalance)", up)
	}
}

func TestK8sPrometheusRule(t *testing.T) {
	objs := loadK8s(t)
	prObj := one(t, objs, "PrometheusRule")
	if prObj.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("prometheusrule: apiVersion %s", prObj.APIVersion)
	}
	var pr struct {
		Spec struct {
			Groups []ruleGroup `yaml:"groups"`
		} `yaml:"spec"`
	}
	prObj.decode(t, &pr)
	var rules []rule
	for _, g := range pr.Spec.Groups {
		rules = append(rules, g.Rules...)
	}
	checkRules(t, exportedMetrics(t), "deploy/k8s/prometheusrule.yaml", rules, slices.Collect(maps.Keys(requiredAlerts)))

	// The compose stack's rules are the same, annotations included, less the
	// Kubernetes-only ones.
	compose := map[string]rule{}
	for _, r := range composeAlerts(t) {
		compose[r.Alert] = r
	}
	for _, r := range rules {
		if slices.Contains(k8sOnlyAlerts, r.Alert) {
			if _, ok := compose[r.Alert]; ok {
				t.Errorf("deploy/prometheus/alerts.yml has %s, which needs kube-state-metrics", r.Alert)
			}
			continue
		}
		c, ok := compose[r.Alert]
		if !ok {
			t.Errorf("deploy/prometheus/alerts.yml lacks %s", r.Alert)
			continue
		}
		delete(compose, r.Alert)
		if c.Expr != r.Expr || c.For != r.For || !mapsEqual(c.Labels, r.Labels) || !mapsEqual(c.Annotations, r.Annotations) {
			t.Errorf("%s differs between deploy/prometheus/alerts.yml and deploy/k8s/prometheusrule.yaml:\n  %+v\n  %+v", r.Alert, c, r)
		}
	}
	for name := range compose {
		t.Errorf("deploy/prometheus/alerts.yml has %s, deploy/k8s/prometheusrule.yaml does not", name)
	}
}

func mapsEqual(a, b map[string]string) bool { return len(a) == len(b) && subset(a, b) }
