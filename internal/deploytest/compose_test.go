package deploytest

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cxbridge/cxbridge/internal/consumer"
)

// --- docker-compose.yml ----------------------------------------------------

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image      string        `yaml:"image"`
	Build      *composeBuild `yaml:"build"`
	Entrypoint stringList    `yaml:"entrypoint"`
	Command    stringList    `yaml:"command"`
	Env        envMap        `yaml:"environment"`
	Deploy     struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
	Secrets     composeSecrets `yaml:"secrets"`
	Ports       []string       `yaml:"ports"`
	Expose      []string       `yaml:"expose"`
	Volumes     []string       `yaml:"volumes"`
	Healthcheck *struct {
		Test    stringList `yaml:"test"`
		Disable bool       `yaml:"disable"`
	} `yaml:"healthcheck"`
	StopGracePeriod string           `yaml:"stop_grace_period"`
	DependsOn       composeDependsOn `yaml:"depends_on"`
}

type composeBuild struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Args       map[string]string `yaml:"args"`
}

// stringList is a string or a list of strings (command, entrypoint, test).
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = strings.Fields(n.Value)
		return nil
	}
	var s []string
	err := n.Decode(&s)
	*l = s
	return err
}

// envMap is an environment as a map or as a list of K=V.
type envMap map[string]string

func (m *envMap) UnmarshalYAML(n *yaml.Node) error {
	out := envMap{}
	if n.Kind == yaml.SequenceNode {
		var kvs []string
		if err := n.Decode(&kvs); err != nil {
			return err
		}
		for _, kv := range kvs {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	} else {
		var mm map[string]string
		if err := n.Decode(&mm); err != nil {
			return err
		}
		for k, v := range mm {
			out[k] = v
		}
	}
	*m = out
	return nil
}

// composeSecrets are the secrets of a service, short or long syntax.
type composeSecrets []struct{ Source, Target string }

func (s *composeSecrets) UnmarshalYAML(n *yaml.Node) error {
	for _, item := range n.Content {
		if item.Kind == yaml.ScalarNode {
			*s = append(*s, struct{ Source, Target string }{item.Value, item.Value})
			continue
		}
		var long struct{ Source, Target string }
		if err := item.Decode(&long); err != nil {
			return err
		}
		if long.Target == "" {
			long.Target = long.Source
		}
		*s = append(*s, long)
	}
	return nil
}

// composeDependsOn maps a dependency to its condition, short or long syntax.
type composeDependsOn map[string]string

func (d *composeDependsOn) UnmarshalYAML(n *yaml.Node) error {
	out := composeDependsOn{}
	if n.Kind == yaml.SequenceNode {
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			out[name] = "service_started"
		}
	} else {
		var m map[string]struct{ Condition string }
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			out[k] = v.Condition
		}
	}
	*d = out
	return nil
}

// secretFile is where a /run/secrets/<target> file of the service comes from.
func (c *composeFile) secretFile(t *testing.T, svc, mounted string) string {
	t.Helper()
	target, ok := strings.CutPrefix(mounted, "/run/secrets/")
	if !ok {
		t.Fatalf("%s: secret file %q is not under /run/secrets/", svc, mounted)
	}
	for _, s := range c.Services[svc].Secrets {
		if s.Target == target {
			def, ok := c.Secrets[s.Source]
			if !ok || def.File == "" {
				t.Fatalf("%s: secret %q is not a top-level file secret", svc, s.Source)
			}
			return strings.TrimPrefix(def.File, "./")
		}
	}
	t.Fatalf("%s: reads %s but does not mount a secret %q", svc, mounted, target)
	return ""
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	var c composeFile
	loadYAML(t, "docker-compose.yml", &c)
	for _, name := range []string{"redpanda", "console", "topics", "sim", "worker", "producer", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yml has no service %q", name)
		}
	}
	return &c
}

// cxbridgeProc is a compose service that runs the cxbridge image: its
// subcommand, flags and environment.
type cxbridgeProc struct {
	service  string
	s        *settings
	flags    map[string]string
	env      map[string]string
	problems []string // flags and CXBRIDGE_* variables that are no setting, or of the wrong kind
}

func (p cxbridgeProc) get(flag string) string { return effective(p.s, p.flags, p.env, flag) }

// proc reads a cxbridge service and notes every flag it passes and every
// CXBRIDGE_* variable it sets that is not a real setting of its subcommand,
// or has a value of the wrong kind (TestComposeCXBridgeServices reports them).
func proc(t *testing.T, c *composeFile, service, command string) cxbridgeProc {
	t.Helper()
	svc := c.Services[service]
	if len(svc.Command) == 0 || svc.Command[0] != command {
		t.Fatalf("%s: command %q, want cxbridge %s", service, svc.Command, command)
	}
	s := helpOf(t, command)
	flags, problems := flagArgs(s, svc.Command[1:])
	p := cxbridgeProc{service: service, s: s, flags: flags, env: svc.Env}
	for _, pr := range problems {
		p.problems = append(p.problems, service+": "+pr)
	}
	for _, name := range slices.Sorted(maps.Keys(svc.Env)) {
		if !strings.HasPrefix(name, "CXBRIDGE_") {
			continue
		}
		st, ok := s.byEnv[name]
		if !ok {
			p.problems = append(p.problems, fmt.Sprintf("%s: %s is not a setting of `cxbridge %s` (see cxbridge %s --help)", service, name, command, command))
			continue
		}
		if name == st.Env {
			if pr := checkValue(service, st, svc.Env[name]); pr != "" {
				p.problems = append(p.problems, pr)
			}
		}
	}
	for name, value := range p.flags {
		if pr := checkValue(service+" --"+name, s.byFlag[name], value); pr != "" {
			p.problems = append(p.problems, pr)
		}
	}
	return p
}

func TestComposeCXBridgeServices(t *testing.T) {
	c := loadCompose(t)
	for name, svc := range c.Services {
		isCXBridge := svc.Build != nil || strings.HasPrefix(svc.Image, "cxbridge:")
		if !isCXBridge {
			continue
		}
		if svc.Build == nil || svc.Build.Dockerfile != "deploy/Dockerfile" || (svc.Build.Context != "." && svc.Build.Context != "./") {
			t.Errorf("%s: build %+v, want context . and dockerfile deploy/Dockerfile", name, svc.Build)
		}
		if _, ok := svc.Build.Args["VERSION"]; !ok {
			t.Errorf("%s: build passes no VERSION argument", name)
		}
		if len(svc.Entrypoint) != 0 {
			t.Errorf("%s: overrides the image's entrypoint /cxbridge", name)
		}
		if len(svc.Command) == 0 || !hasCommand(t, svc.Command[0]) {
			t.Errorf("%s: command %q is no cxbridge subcommand", name, svc.Command)
		}
	}
	for _, sc := range []struct{ service, command string }{{"worker", "run"}, {"sim", "sim"}, {"producer", "produce"}} {
		for _, pr := range proc(t, c, sc.service, sc.command).problems {
			t.Error(pr)
		}
	}
}

// topicSpecs reads `rpk topic create NAME -p N` from the topics job.
func topicSpecs(t *testing.T, c *composeFile) map[string]int {
	t.Helper()
	script := strings.Join(c.Services["topics"].Command, "\n")
	re := regexp.MustCompile(`rpk topic create (\S+) -p (\d+)`)
	topics := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(script, -1) {
		n, _ := strconv.Atoi(m[2])
		topics[m[1]] = n
	}
	if len(topics) == 0 {
		t.Fatalf("the topics job creates no topic with `rpk topic create NAME -p N`:\n%s", script)
	}
	return topics
}

// inputPartitions is the input topic's partition count in the compose stack,
// the bound of the worker count there and of KEDA's maxReplicaCount.
func inputPartitions(t *testing.T) int {
	t.Helper()
	c := loadCompose(t)
	worker := proc(t, c, "worker", "run")
	n, ok := topicSpecs(t, c)[worker.get("kafka-input-topic")]
	if !ok {
		t.Fatalf("the topics job does not create the input topic %q", worker.get("kafka-input-topic"))
	}
	return n
}

func TestComposeTopics(t *testing.T) {
	c := loadCompose(t)
	worker := proc(t, c, "worker", "run")
	producer := proc(t, c, "producer", "produce")
	topics := topicSpecs(t, c)
	for _, flag := range []string{"kafka-input-topic", "kafka-dlq-topic"} {
		name := worker.get(flag)
		if topics[name] == 0 {
			t.Errorf("the topics job does not create the worker's --%s %q (creates %v)", flag, name, topics)
		}
	}
	if in, dlq := worker.get("kafka-input-topic"), worker.get("kafka-dlq-topic"); in == dlq {
		t.Errorf("the worker's input and DLQ topics are both %q", in)
	}
	if got, want := producer.get("kafka-input-topic"), worker.get("kafka-input-topic"); got != want {
		t.Errorf("the producer writes to %q, the worker reads %q", got, want)
	}
	topicsJob := c.Services["topics"]
	if topicsJob.DependsOn["redpanda"] != "service_healthy" {
		t.Errorf("topics: depends_on redpanda %q, want service_healthy", topicsJob.DependsOn["redpanda"])
	}
	for _, svc := range []string{"worker", "producer"} {
		if got := c.Services[svc].DependsOn["topics"]; got != "service_completed_successfully" {
			t.Errorf("%s: depends_on topics %q, want service_completed_successfully", svc, got)
		}
	}
}

// redpandaListener is the advertised address of a Redpanda listener.
func redpandaListener(t *testing.T, c *composeFile, listener string) string {
	t.Helper()
	cmd := c.Services["redpanda"].Command
	i := slices.Index(cmd, "--advertise-kafka-addr")
	if i < 0 || i+1 >= len(cmd) {
		t.Fatalf("redpanda: no --advertise-kafka-addr in %q", cmd)
	}
	for _, l := range strings.Split(cmd[i+1], ",") {
		if addr, ok := strings.CutPrefix(l, listener+"://"); ok {
			return addr
		}
	}
	t.Fatalf("redpanda advertises no %q listener: %s", listener, cmd[i+1])
	return ""
}

func TestComposeBrokers(t *testing.T) {
	c := loadCompose(t)
	internal := redpandaListener(t, c, "internal")
	host, _, _ := strings.Cut(internal, ":")
	if _, ok := c.Services[host]; !ok {
		t.Errorf("redpanda advertises %s, and %q is no service", internal, host)
	}
	for _, p := range []cxbridgeProc{proc(t, c, "worker", "run"), proc(t, c, "producer", "produce")} {
		if got := p.get("kafka-brokers"); got != internal {
			t.Errorf("%s: brokers %q, want Redpanda's internal listener %q", p.service, got, internal)
		}
	}
	script := strings.Join(c.Services["topics"].Command, "\n")
	if strings.Count(script, "brokers="+internal) != strings.Count(script, "rpk ") {
		t.Errorf("topics: every rpk call must name -X brokers=%s:\n%s", internal, script)
	}
	external := redpandaListener(t, c, "external")
	if _, port, _ := strings.Cut(external, ":"); !slices.Contains(c.Services["redpanda"].Ports, port+":"+port) {
		t.Errorf("redpanda advertises %s to the host but does not publish port %s", external, port)
	}
}

func TestComposeWorker(t *testing.T) {
	c := loadCompose(t)
	svc := c.Services["worker"]
	worker := proc(t, c, "worker", "run")
	if svc.Deploy.Replicas == nil || *svc.Deploy.Replicas != 3 {
		t.Errorf("worker: deploy.replicas %s, want 3", ptr(svc.Deploy.Replicas))
	} else if n := inputPartitions(t); *svc.Deploy.Replicas > n {
		t.Errorf("worker: %d replicas for %d partitions: some would hold none", *svc.Deploy.Replicas, n)
	}
	if worker.get("kafka-group-id") == "" {
		t.Error("worker: no consumer group")
	}
	for _, s := range c.Services {
		if s.Image == svc.Image && len(s.Command) > 0 && s.Command[0] == "run" && s.Deploy.Replicas == nil {
			t.Error("a second worker service would join the group with other settings")
		}
	}
	shutdown, err := time.ParseDuration(worker.get("shutdown-timeout"))
	if err != nil {
		t.Fatal(err)
	}
	grace, err := time.ParseDuration(svc.StopGracePeriod)
	if err != nil {
		t.Fatalf("worker: stop_grace_period %q: %v", svc.StopGracePeriod, err)
	}
	if grace < shutdown+consumer.LeaveTimeout {
		t.Errorf("worker: stop_grace_period %s must be at least the shutdown timeout %s and %s to commit and leave the group", grace, shutdown, consumer.LeaveTimeout)
	}
	port := strconv.Itoa(portOf(t, worker.get("admin-addr")))
	if !slices.Contains(svc.Expose, port) {
		t.Errorf("worker: expose %q lacks the admin port %s", svc.Expose, port)
	}
	if len(svc.Ports) != 0 {
		t.Errorf("worker: publishes %q: %d replicas cannot share host ports", svc.Ports, *svc.Deploy.Replicas)
	}
}

func TestComposeWorkerReachesSimulator(t *testing.T) {
	c := loadCompose(t)
	worker := proc(t, c, "worker", "run")
	simp := proc(t, c, "sim", "sim")
	u, err := url.Parse(worker.get("cxone-base-url"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Host == "" || u.Path != "" && u.Path != "/" {
		t.Fatalf("worker: CXone base URL %q, want http://sim:PORT", u)
	}
	if u.Hostname() != "sim" {
		t.Errorf("worker: CXone base URL host %q is not the sim service", u.Hostname())
	}
	if got, want := u.Port(), strconv.Itoa(portOf(t, simp.get("addr"))); got != want {
		t.Errorf("worker: CXone base URL port %s, the simulator listens on %s (--addr %s)", got, want, simp.get("addr"))
	}
	if host, _, _ := strings.Cut(simp.get("addr"), ":"); host != "0.0.0.0" && host != "" {
		t.Errorf("sim: --addr %q must listen on every interface for the workers to reach it", simp.get("addr"))
	}
	if u.Scheme == "http" && worker.get("cxone-allow-http") != "true" {
		t.Error("worker: an http:// CXone URL to a non-loopback host needs CXBRIDGE_CXONE_ALLOW_HTTP=true")
	}
	if tok := worker.get("cxone-token-url"); tok != "" && !strings.HasPrefix(tok, u.String()) {
		t.Errorf("worker: token URL %q is not on the simulator", tok)
	}
}

func TestComposeCredentialsMatchSimulator(t *testing.T) {
	c := loadCompose(t)
	worker := proc(t, c, "worker", "run")
	simp := proc(t, c, "sim", "sim")
	id, secret := simDefaults(t)

	if got := worker.get("cxone-client-id"); got != id {
		t.Errorf("worker: client id %q, the simulator's default is %q", got, id)
	}
	if got := simp.get("cxone-client-id"); got != id {
		t.Errorf("sim: client id %q, want its default %q", got, id)
	}
	if _, ok := worker.env["CXBRIDGE_CXONE_CLIENT_SECRET"]; ok {
		t.Error("worker: the client secret is in the environment; give it as a compose secret file (CXBRIDGE_CXONE_CLIENT_SECRET_FILE)")
	}
	mounted := worker.env["CXBRIDGE_CXONE_CLIENT_SECRET_FILE"]
	if mounted == "" {
		t.Fatal("worker: no CXBRIDGE_CXONE_CLIENT_SECRET_FILE")
	}
	file := c.secretFile(t, "worker", mounted)
	raw := readFile(t, file)
	// The worker trims the trailing line break of a secret file.
	if got := strings.TrimRight(string(raw), "\r\n"); got != secret {
		t.Errorf("%s holds %q, the simulator's default secret is %q", file, got, secret)
	}
	fi, err := os.Stat(path(file))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o004 == 0 {
		t.Errorf("%s has mode %v: compose bind-mounts it as is, and the image's non-root user must read it (chmod 644)", file, fi.Mode().Perm())
	}
	// The simulator, when it reads a secret file, reads the same one.
	if simFile, ok := simp.env["CXBRIDGE_CLIENT_SECRET_FILE"]; ok {
		if got := c.secretFile(t, "sim", simFile); got != file {
			t.Errorf("sim reads its secret from %s, the worker from %s", got, file)
		}
	} else if _, ok := simp.env["CXBRIDGE_CLIENT_SECRET"]; ok {
		t.Error("sim: the client secret is in the environment; use the secret file")
	}
}

func TestComposeProducer(t *testing.T) {
	c := loadCompose(t)
	p := proc(t, c, "producer", "produce")
	for flag, want := range map[string]string{"count": "0", "rate": "200", "invalid-ratio": "0.01"} {
		if got := p.get(flag); got != want {
			t.Errorf("producer: --%s %s, want %s", flag, got, want)
		}
	}
}

// TestComposeHealthchecks: every service with a health check that runs the
// cxbridge binary uses the real healthcheck subcommand on the port that
// service listens on; the producer, which serves nothing, disables the
// image's check; the images the stack depends on for ordering have one.
func TestComposeHealthchecks(t *testing.T) {
	c := loadCompose(t)
	hc := helpOf(t, "healthcheck")
	defaultURL := hc.byFlag["url"].Default
	listens := map[string]string{ // service → its admin/listen address
		"worker": proc(t, c, "worker", "run").get("admin-addr"),
		"sim":    proc(t, c, "sim", "sim").get("addr"),
	}
	for name, addr := range listens {
		h := c.Services[name].Healthcheck
		if h == nil || h.Disable || len(h.Test) < 3 || h.Test[0] != "CMD" || h.Test[1] != "/cxbridge" || h.Test[2] != "healthcheck" {
			t.Errorf("%s: healthcheck %+v, want [CMD /cxbridge healthcheck …]", name, h)
			continue
		}
		flags, problems := flagArgs(hc, h.Test[3:])
		for _, pr := range problems {
			t.Errorf("%s healthcheck: %s", name, pr)
		}
		u := defaultURL
		if v, ok := flags["url"]; ok {
			u = v
		}
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := pu.Port(), strconv.Itoa(portOf(t, addr)); got != want || pu.Path != "/healthz" {
			t.Errorf("%s: healthcheck checks %s, the service listens on port %s (/healthz)", name, u, want)
		}
	}
	if h := c.Services["producer"].Healthcheck; h == nil || !h.Disable {
		t.Error("producer: serves no /healthz; disable the image's health check")
	}
	for _, name := range []string{"redpanda", "prometheus", "grafana"} {
		if h := c.Services[name].Healthcheck; h == nil || h.Disable || len(h.Test) == 0 {
			t.Errorf("%s: no healthcheck", name)
		}
	}
	for name, svc := range c.Services {
		for dep, cond := range svc.DependsOn {
			if cond == "service_healthy" {
				if h := c.Services[dep].Healthcheck; h == nil || h.Disable {
					t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
				}
			}
		}
	}
}

// TestComposeMonitoring: Prometheus scrapes every worker replica on the
// admin port and loads the alert rules; Grafana gets the datasource and the
// dashboard from deploy/grafana.
func TestComposeMonitoring(t *testing.T) {
	c := loadCompose(t)
	worker := proc(t, c, "worker", "run")
	adminPort := portOf(t, worker.get("admin-addr"))

	var prom promConfig
	loadYAML(t, "deploy/prometheus/prometheus.yml", &prom)
	job := prom.job(t, "cxbridge")
	if len(job.DNSSD) != 1 || !slices.Equal(job.DNSSD[0].Names, []string{"worker"}) {
		t.Fatalf("prometheus: job cxbridge must discover the `worker` service's replicas by DNS, got %+v", job.DNSSD)
	}
	if got := job.DNSSD[0].Port; got != adminPort {
		t.Errorf("prometheus: scrapes the workers on port %d, their admin port is %d", got, adminPort)
	}
	if typ := job.DNSSD[0].Type; typ != "" && typ != "A" {
		t.Errorf("prometheus: dns_sd type %q: Docker's DNS answers A records", typ)
	}
	if job.MetricsPath != "" && job.MetricsPath != "/metrics" {
		t.Errorf("prometheus: metrics_path %q, the worker serves /metrics", job.MetricsPath)
	}

	// Every file Prometheus reads is mounted from deploy/prometheus.
	mounts := mountsOf(t, c.Services["prometheus"])
	if _, ok := mounts["/etc/prometheus/prometheus.yml"]; !ok {
		t.Error("prometheus: deploy/prometheus/prometheus.yml is not mounted at /etc/prometheus/prometheus.yml")
	}
	if len(prom.RuleFiles) == 0 {
		t.Error("prometheus: no rule_files")
	}
	for _, rf := range prom.RuleFiles {
		src, ok := mounts[rf]
		if !ok {
			t.Errorf("prometheus: rule file %s is not mounted", rf)
			continue
		}
		if _, err := os.Stat(path(src)); err != nil {
			t.Errorf("prometheus: rule file %s: %v", rf, err)
		}
	}

	// Grafana: provisioning and dashboards mounted where the provider looks.
	gm := mountsOf(t, c.Services["grafana"])
	if gm["/etc/grafana/provisioning"] != "deploy/grafana/provisioning" {
		t.Errorf("grafana: /etc/grafana/provisioning mounted from %q, want deploy/grafana/provisioning", gm["/etc/grafana/provisioning"])
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	loadYAML(t, "deploy/grafana/provisioning/dashboards/dashboards.yml", &prov)
	if len(prov.Providers) != 1 {
		t.Fatalf("grafana: %d dashboard providers, want 1", len(prov.Providers))
	}
	if src := gm[prov.Providers[0].Options.Path]; src != "deploy/grafana/dashboards" {
		t.Errorf("grafana: the provider reads %s, mounted from %q, want deploy/grafana/dashboards", prov.Providers[0].Options.Path, src)
	}
	ds := grafanaDatasource(t)
	u, err := url.Parse(ds.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Services[u.Hostname()]; !ok || u.Hostname() != "prometheus" || u.Port() != "9090" {
		t.Errorf("grafana datasource URL %s, want http://prometheus:9090", ds.URL)
	}
}

// mountsOf maps a service's bind mounts: container path → repository path.
func mountsOf(t *testing.T, svc composeService) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], "./") {
			continue
		}
		src := strings.TrimSuffix(strings.TrimPrefix(parts[0], "./"), "/")
		if _, err := os.Stat(path(src)); err != nil {
			t.Errorf("mount %s: %v", v, err)
		}
		m[parts[1]] = src
	}
	return m
}

type promConfig struct {
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

type scrapeConfig struct {
	JobName     string `yaml:"job_name"`
	MetricsPath string `yaml:"metrics_path"`
	DNSSD       []struct {
		Names []string `yaml:"names"`
		Type  string   `yaml:"type"`
		Port  int      `yaml:"port"`
	} `yaml:"dns_sd_configs"`
}

func (p *promConfig) job(t *testing.T, name string) scrapeConfig {
	t.Helper()
	for _, j := range p.ScrapeConfigs {
		if j.JobName == name {
			return j
		}
	}
	t.Fatalf("prometheus.yml has no job %q", name)
	return scrapeConfig{}
}

// --- deploy/Dockerfile -----------------------------------------------------

// dockerfile returns the instructions of deploy/Dockerfile, continuation
// lines joined, comments dropped.
func dockerfile(t *testing.T) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(string(readFile(t, "deploy/Dockerfile")), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := dockerfile(t)
	all := strings.Join(ins, "\n")
	var froms []string
	final := map[string][]string{} // instruction → its arguments, in the final stage
	for _, in := range ins {
		op, args, _ := strings.Cut(in, " ")
		op = strings.ToUpper(op)
		if op == "FROM" {
			froms = append(froms, args)
			final = map[string][]string{}
		}
		final[op] = append(final[op], args)
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:") {
		t.Errorf("stages %q: want a golang builder and a final image", froms)
	}
	// The builder is the Go of go.mod, to the patch release.
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(readFile(t, "go.mod")))
	if goVersion == nil {
		t.Fatal("go.mod has no go line")
	}
	if !strings.Contains(all, "ARG GO_VERSION="+goVersion[1]+"\n") && froms[0] != "golang:"+goVersion[1]+" AS build" {
		t.Errorf("the builder is not golang:%s (go.mod's version)", goVersion[1])
	}
	// The image names the licence the repository states.
	if lic := string(readFile(t, "LICENSE")); !strings.Contains(lic, "Apache License") || !strings.Contains(lic, "Version 2.0") {
		t.Error("LICENSE is not the Apache License 2.0")
	}
	if !strings.Contains(all, "ARG LICENSES=Apache-2.0") || !strings.Contains(all, `org.opencontainers.image.licenses="${LICENSES}"`) {
		t.Error("deploy/Dockerfile: the image label does not name Apache-2.0")
	}
	if len(froms) > 0 && froms[len(froms)-1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final image %q, want gcr.io/distroless/static-debian12:nonroot", froms[len(froms)-1])
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-s -w -X github.com/cxbridge/cxbridge/internal/version.Version=${VERSION}`, "./cmd/cxbridge"} {
		if !strings.Contains(all, want) {
			t.Errorf("deploy/Dockerfile: the build lacks %q", want)
		}
	}
	// The -X path must name the real variable, as the Makefile does.
	if !strings.Contains(string(readFile(t, "internal/version/version.go")), "var Version = ") {
		t.Error("internal/version has no `var Version`: the -X ldflag sets nothing")
	}
	if !strings.Contains(string(readFile(t, "Makefile")), "-X github.com/cxbridge/cxbridge/internal/version.Version=") {
		t.Error("the Makefile and deploy/Dockerfile set the version differently")
	}

	if got := final["USER"]; !slices.Equal(got, []string{"nonroot:nonroot"}) && !slices.Equal(got, []string{"nonroot"}) {
		t.Errorf("USER %q, want nonroot", got)
	}
	if got := final["ENTRYPOINT"]; !slices.Equal(got, []string{`["/cxbridge"]`}) {
		t.Errorf("ENTRYPOINT %q, want [\"/cxbridge\"]", got)
	}
	if got := final["CMD"]; !slices.Equal(got, []string{`["run"]`}) {
		t.Errorf("CMD %q, want [\"run\"]", got)
	}
	labels := strings.Join(final["LABEL"], " ")
	for _, l := range []string{"title", "description", "source", "version", "licenses"} {
		if !strings.Contains(labels, "org.opencontainers.image."+l+"=") {
			t.Errorf("no label org.opencontainers.image.%s", l)
		}
	}

	// EXPOSE is the worker's admin port.
	adminPort := portOf(t, helpOf(t, "run").byFlag["admin-addr"].Default)
	if got := final["EXPOSE"]; !slices.Equal(got, []string{strconv.Itoa(adminPort)}) {
		t.Errorf("EXPOSE %q, the worker's admin port is %d", got, adminPort)
	}

	// HEALTHCHECK runs the real healthcheck subcommand, whose default URL is
	// the worker's /healthz.
	hc := strings.Join(final["HEALTHCHECK"], " ")
	if !strings.Contains(hc, `CMD ["/cxbridge", "healthcheck"]`) && !strings.Contains(hc, `CMD ["/cxbridge","healthcheck"]`) {
		t.Errorf("HEALTHCHECK %q, want CMD [\"/cxbridge\",\"healthcheck\"]", hc)
	}
	u, err := url.Parse(helpOf(t, "healthcheck").byFlag["url"].Default)
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() != strconv.Itoa(adminPort) || u.Path != "/healthz" {
		t.Errorf("cxbridge healthcheck checks %s by default, the worker serves /healthz on %d", u, adminPort)
	}
}

func TestDockerignore(t *testing.T) {
	lines := strings.Split(string(readFile(t, ".dockerignore")), "\n")
	ignored := func(p string) bool {
		for _, l := range lines {
			l = strings.TrimSuffix(strings.TrimSpace(l), "/")
			if l != "" && !strings.HasPrefix(l, "#") && (p == l || strings.HasPrefix(p, l+"/")) {
				return true
			}
		}
		return false
	}
	for _, p := range []string{".git", "deploy/compose/cxone-client-secret.txt", "bin"} {
		if !ignored(p) {
			t.Errorf(".dockerignore does not keep %s out of the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/cxbridge/main.go", "internal/version/version.go"} {
		if ignored(p) {
			t.Errorf(".dockerignore drops %s, which the build needs", p)
		}
	}
}
