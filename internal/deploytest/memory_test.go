package deploytest

import (
	"regexp"
	"strconv"
	"testing"
)

// --- memory: the container limit, GOMEMLIMIT and the worker's own bound ------

// memBound is the most memory a worker may use at its settings, as
// docs/RELIABILITY.md derives it: every record held costs up to 4 times its
// size while it is processed (--max-in-flight-bytes), each partition
// holds up to 3 records' worth (a fetch response and two records in
// hand-over), each up to the larger of --kafka-fetch-max-bytes and the
// topic's max.message.bytes, the runtime
// and the binary take about 25 MiB, and Go's collector lets the heap reach
// twice what is live.
func memBound(t *testing.T, get func(string) string, partitions int) int64 {
	t.Helper()
	num := func(flag string) int64 {
		n, err := strconv.ParseInt(get(flag), 10, 64)
		if err != nil {
			t.Fatalf("--%s %q: %v", flag, get(flag), err)
		}
		return n
	}
	// A fetch returns at least one whole record batch, however small
	// --kafka-fetch-max-bytes is: a record of up to the topic's
	// max.message.bytes (Kafka's default, about 1 MiB) reaches the worker.
	record := max(num("kafka-fetch-max-bytes"), 1<<20+1024)
	live := 4*num("max-in-flight-bytes") + int64(partitions)*3*record + 25<<20
	return 2 * live
}

var quantityRe = regexp.MustCompile(`^([0-9]+)([A-Za-z]*)$`)

// quantity parses a memory size: Kubernetes (512Mi, 1G), Docker (512M,
// 512m: binary units) or GOMEMLIMIT (460MiB, 1GiB, bytes).
func quantity(t *testing.T, where, s string) int64 {
	t.Helper()
	m := quantityRe.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%s: %q is not a memory size", where, s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	units := map[string]int64{
		"": 1, "B": 1, "Ki": 1 << 10, "KiB": 1 << 10, "Mi": 1 << 20, "MiB": 1 << 20, "Gi": 1 << 30, "GiB": 1 << 30,
		"k": 1000, "M": 1000 * 1000, "G": 1000 * 1000 * 1000,
	}
	if where == "docker-compose.yml" { // Docker's units are binary, either case
		units = map[string]int64{"": 1, "b": 1, "k": 1 << 10, "K": 1 << 10, "m": 1 << 20, "M": 1 << 20, "g": 1 << 30, "G": 1 << 30}
	}
	u, ok := units[m[2]]
	if !ok {
		t.Fatalf("%s: %q: unknown unit %q", where, s, m[2])
	}
	return n * u
}

// checkMemory: GOMEMLIMIT is set a little under the container's limit
// (80–95 %: the rest is for what Go does not count), and the worker's own
// bound at its settings fits under GOMEMLIMIT.
func checkMemory(t *testing.T, where string, limit, gomemlimit, bound int64) {
	t.Helper()
	ratio := float64(gomemlimit) / float64(limit)
	if ratio < 0.80 || ratio > 0.95 {
		t.Errorf("%s: GOMEMLIMIT %d MiB is %.0f %% of the memory limit %d MiB, want 80–95 %%", where, gomemlimit>>20, 100*ratio, limit>>20)
	}
	if bound > gomemlimit {
		t.Errorf("%s: the worker's bound at its settings, %d MiB, is over GOMEMLIMIT %d MiB: lower --max-in-flight-bytes", where, bound>>20, gomemlimit>>20)
	}
	t.Logf("%s: limit %d MiB, GOMEMLIMIT %d MiB (%.0f %%), the worker's bound %d MiB", where, limit>>20, gomemlimit>>20, 100*ratio, bound>>20)
}

func TestK8sMemoryLimit(t *testing.T) {
	w := loadWorker(t, loadK8s(t))
	limit := w.c.Resources.Limits["memory"]
	if limit == "" {
		t.Fatal("deployment: no resources.limits.memory")
	}
	checkMemory(t, "deploy/k8s", quantity(t, "deploy/k8s", limit), gomemlimit(t, w), // a value or the resources' (kustomize_test.go)
		memBound(t, func(f string) string { return w.get(t, f) }, inputPartitions(t)))
}

func TestComposeMemoryLimit(t *testing.T) {
	var c struct {
		Services map[string]struct {
			Deploy struct {
				Resources struct {
					Limits struct {
						Memory string `yaml:"memory"`
					} `yaml:"limits"`
				} `yaml:"resources"`
			} `yaml:"deploy"`
		} `yaml:"services"`
	}
	loadYAML(t, "docker-compose.yml", &c)
	limit := c.Services["worker"].Deploy.Resources.Limits.Memory
	if limit == "" {
		t.Fatal("docker-compose.yml: the worker has no deploy.resources.limits.memory")
	}
	worker := proc(t, loadCompose(t), "worker", "run")
	gml, ok := worker.env["GOMEMLIMIT"]
	if !ok {
		t.Fatal("docker-compose.yml: no GOMEMLIMIT for the worker")
	}
	checkMemory(t, "docker-compose.yml", quantity(t, "docker-compose.yml", limit), quantity(t, "GOMEMLIMIT", gml),
		memBound(t, worker.get, inputPartitions(t)))
}
