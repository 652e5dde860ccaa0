package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/admin"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/retry"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

const (
	inputTopic = "cxone.events"
	dlqTopic   = "cxone.events.dlq"
	groupID    = "cxbridge-chaos"
	partitions = 6
)

// Size is how big a run is: records and their pace, and how long faults last.
type Size struct {
	Name    string
	Records int     // records produced per scenario (good and bad)
	Rate    float64 // records per second the producer writes
	Keys    int     // distinct Kafka keys
	Bytes   int     // approximate size of an event's data

	Latency, Jitter time.Duration // the simulator's latency per publish

	Outage      time.Duration // the CXone outage
	Storm       time.Duration // the 429 storm
	StormLimit  float64       // accepted publishes per second during the storm
	TokenExpiry time.Duration // tokens refused this long after they were issued
	BrokerDown  time.Duration // how long the broker stays dead
	ResetEvery  time.Duration // connection resets between the worker and CXone

	// Kills is how many times a kill scenario kills a worker, each once
	// the group has recovered from the one before; KillRate is the
	// producer's pace in those scenarios, slow enough that records keep
	// coming through every kill (a freeze can only be seen while there is
	// something to publish).
	Kills    int
	KillRate float64

	Timeout time.Duration // a whole scenario at most
}

// Sizes are the two sizes of the suite.
var Sizes = map[string]Size{
	// reduced runs in `make test`: every scenario in a few seconds.
	"reduced": {Name: "reduced", Records: 3000, Rate: 1000, Keys: 200, Bytes: 300,
		Latency: 2 * time.Millisecond, Jitter: 5 * time.Millisecond,
		Outage: 3 * time.Second, Storm: 3 * time.Second, StormLimit: 20, TokenExpiry: 2 * time.Second,
		BrokerDown: time.Second, ResetEvery: 500 * time.Millisecond,
		Kills: 2, KillRate: 150, Timeout: 4 * time.Minute},
	// full is the figure of docs/RELIABILITY.md: 100,000 records a scenario.
	"full": {Name: "full", Records: 100_000, Rate: 2500, Keys: 1000, Bytes: 300,
		Latency: 5 * time.Millisecond, Jitter: 10 * time.Millisecond,
		Outage: 30 * time.Second, Storm: 20 * time.Second, StormLimit: 50, TokenExpiry: 5 * time.Second,
		BrokerDown: 10 * time.Second, ResetEvery: 500 * time.Millisecond,
		Kills: 6, KillRate: 1000, Timeout: 20 * time.Minute},
}

// Harness runs one scenario's processes in its own directory.
type Harness struct {
	Bin  string
	Dir  string
	Size Size
	Logf func(format string, args ...any)

	brokerAddr, simAddr, cxoneURL string
	// The scenario's topics and group: the shipped names on the embedded
	// broker (one per scenario), names of the scenario's own on a real one.
	input, dlq, group  string
	name               string // the scenario's
	secret, secretFile string
	invalidRatio       float64
	baseFaults         sim.Faults

	mu      sync.Mutex
	broker  *Proc
	workers map[string]*Proc
	admins  map[string]string // each worker's admin address
	procs   []*Proc           // every process started, for the log scan
	proxy   *Proxy
	faults  []Fault
	samples []sample

	client *kafka.Client
	hc     *http.Client
}

// Fault is one fault injected, from Start to End (when it was cleared).
// Recovered, when set, is when the harness saw the group whole again after
// it: a kill's restarted worker a member of a new generation with the
// others, and the simulator accepting since.
type Fault struct {
	Name       string
	Start, End time.Time
	Recovered  time.Time
}

type sample struct {
	t        time.Time
	distinct int64 // distinct events the simulator accepted; -1 unknown
	lag      int64 // the group's lag; -1 unknown (broker away)
}

func (h *Harness) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}

// setup starts the broker and the simulator (behind the proxy when asked).
func (h *Harness) setup(ctx context.Context, withProxy bool) error {
	var err error
	h.workers, h.admins = map[string]*Proc{}, map[string]string{}
	h.hc = &http.Client{Timeout: 10 * time.Second}
	if h.brokerAddr, err = testutil.FreeAddr(); err != nil {
		return err
	}
	if h.simAddr, err = testutil.FreeAddr(); err != nil {
		return err
	}
	h.secret = "chaos-secret-" + rand.Text()
	h.secretFile = filepath.Join(h.Dir, "client-secret")
	if err := os.WriteFile(h.secretFile, []byte(h.secret+"\n"), 0o600); err != nil {
		return err
	}
	h.input, h.dlq, h.group = inputTopic, dlqTopic, groupID
	if testkafka.External() {
		// The real broker of the environment: a scenario's topics and
		// group are its own, deleted when it ends.
		h.brokerAddr = strings.Split(os.Getenv(testkafka.EnvBrokers), ",")[0]
		prefix := testkafka.Prefix("chaos." + h.name)
		h.input, h.dlq, h.group = prefix+inputTopic, prefix+dlqTopic, prefix+groupID
	}
	h.client = &kafka.Client{Addr: kafka.TCP(h.brokerAddr), Timeout: 5 * time.Second, Transport: &kafka.Transport{}}
	if err := h.startBroker(ctx); err != nil {
		return err
	}
	if _, err := h.start("sim", "sim", "--addr", h.simAddr); err != nil {
		return err
	}
	h.cxoneURL = "http://" + h.simAddr
	if err := h.await(ctx, 30*time.Second, "the simulator answers", func() bool {
		resp, err := h.hc.Get(h.cxoneURL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return err
	}
	if err := h.setFaults(h.baseFaults); err != nil {
		return err
	}
	if withProxy {
		if h.proxy, err = NewProxy(h.simAddr); err != nil {
			return err
		}
		h.cxoneURL = "http://" + h.proxy.Addr()
	}
	return nil
}

// start runs a cxbridge subcommand; the simulator gets the client secret
// from the environment, every other process from a file.
func (h *Harness) start(name string, args ...string) (*Proc, error) {
	env := []string{"CXBRIDGE_CXONE_CLIENT_SECRET=" + h.secret}
	if args[0] == "run" {
		env = []string{"CXBRIDGE_CXONE_CLIENT_SECRET_FILE=" + h.secretFile}
	}
	p, err := start(h.Bin, h.Dir, name, args, env)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p, nil
}

func (h *Harness) startBroker(ctx context.Context) error {
	if testkafka.External() {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return testkafka.CreateTopics(cctx, h.client, partitions, nil, h.input, h.dlq)
	}
	p, err := h.start("broker", "dev", "--only", "broker", "--broker-addr", h.brokerAddr,
		"--partitions", strconv.Itoa(partitions), "--data-dir", filepath.Join(h.Dir, "broker-data"))
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.broker = p
	h.mu.Unlock()
	return h.await(ctx, 60*time.Second, "the broker serves both topics", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		md, err := h.client.Metadata(c, &kafka.MetadataRequest{Topics: []string{h.input, h.dlq}})
		if err != nil || len(md.Topics) != 2 {
			return false
		}
		for _, t := range md.Topics {
			if t.Error != nil || len(t.Partitions) != partitions {
				return false
			}
		}
		return true
	})
}

// KillBroker kills the broker (SIGKILL) and starts it again on the same
// data after down.
func (h *Harness) KillBroker(ctx context.Context, down time.Duration) error {
	h.mu.Lock()
	b := h.broker
	h.mu.Unlock()
	t0 := time.Now()
	if testkafka.External() {
		if err := testkafka.Kill(ctx); err != nil {
			return err
		}
	} else {
		b.Kill()
	}
	h.logf("broker killed")
	if err := sleep(ctx, down); err != nil {
		return err
	}
	if testkafka.External() {
		if err := testkafka.Restart(ctx); err != nil {
			return err
		}
	} else if err := h.startBroker(ctx); err != nil {
		return err
	}
	h.recordFault(Fault{Name: "broker restart", Start: t0, End: time.Now()})
	h.logf("broker back after %v", time.Since(t0).Round(time.Millisecond))
	return nil
}

// StartWorker starts the worker called name (again, if it ran before),
// with the shipped defaults: only what is not a tuning is set — where the
// broker, the group, CXone and the admin server are, and the log level.
func (h *Harness) StartWorker(name string) error {
	admin, err := testutil.FreeAddr()
	if err != nil {
		return err
	}
	p, err := h.start(name, "run",
		"--kafka-brokers", h.brokerAddr, "--kafka-group-id", h.group, "--kafka-input-topic", h.input, "--kafka-dlq-topic", h.dlq,
		"--cxone-base-url", h.cxoneURL, "--cxone-client-id", sim.DefaultClientID,
		"--admin-addr", admin, "--log-level", "info")
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.workers[name] = p
	h.admins[name] = admin
	h.mu.Unlock()
	return nil
}

// KillWorker kills a worker with SIGKILL: no drain, no commit, no leave.
func (h *Harness) KillWorker(name string) {
	h.mu.Lock()
	p := h.workers[name]
	delete(h.workers, name)
	h.mu.Unlock()
	p.Kill()
	h.logf("%s killed", name)
}

// StopWorker stops a worker with SIGTERM; it must exit 0 within the
// shipped --shutdown-timeout (30 s) and the 10 s it may take to commit
// and leave, as deploy/ gives it before SIGKILL (45 s).
func (h *Harness) StopWorker(name string) error {
	h.mu.Lock()
	p := h.workers[name]
	delete(h.workers, name)
	h.mu.Unlock()
	return p.Stop(45 * time.Second)
}

// SetFaults replaces the simulator's faults (on top of the base faults).
func (h *Harness) setFaults(f sim.Faults) error {
	b, _ := json.Marshal(f)
	req, _ := http.NewRequest(http.MethodPut, "http://"+h.simAddr+"/sim/faults", bytes.NewReader(b))
	resp, err := h.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT /sim/faults: %s: %s", resp.Status, body)
	}
	return nil
}

func (h *Harness) simStats() (sim.Stats, error) {
	var st sim.Stats
	resp, err := h.hc.Get("http://" + h.simAddr + "/sim/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (h *Harness) offsets(ctx context.Context) (consumer.GroupLag, error) {
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return consumer.ReadGroupLag(c, h.client, h.group, h.input)
}

// sampleLoop records the simulator's distinct count and the group's lag
// every 100 ms until ctx ends.
func (h *Harness) sampleLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		s := sample{t: time.Now(), distinct: -1, lag: -1}
		if st, err := h.simStats(); err == nil {
			s.distinct = st.Distinct
		}
		if o, err := h.offsets(ctx); err == nil && len(o.End) == partitions {
			s.lag = o.TotalLag()
		}
		h.mu.Lock()
		h.samples = append(h.samples, s)
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Progress waits until the simulator has accepted frac of the good records
// the run will produce.
func (h *Harness) Progress(ctx context.Context, frac float64) error {
	want := int64(frac * float64(h.Size.Records) * (1 - h.invalidRatio))
	return h.await(ctx, h.Size.Timeout, fmt.Sprintf("%d events accepted", want), func() bool {
		st, err := h.simStats()
		return err == nil && st.Distinct >= want
	})
}

func (h *Harness) recordFault(f Fault) {
	h.mu.Lock()
	h.faults = append(h.faults, f)
	h.mu.Unlock()
}

// await polls cond every 20 ms until it holds, ctx ends or timeout passes.
func (h *Harness) await(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting until %s", timeout, what)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("waiting until %s: %w", what, err)
		}
	}
	return nil
}

// sleep is retry.Sleep, ending with ctx's cause (a scenario's timeout says
// which scenario).
func sleep(ctx context.Context, d time.Duration) error {
	if retry.Sleep(ctx, d) != nil {
		return context.Cause(ctx)
	}
	return nil
}

// close stops every process still running (SIGKILL) and the proxy.
func (h *Harness) close() {
	h.mu.Lock()
	procs := h.procs
	h.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			p.Kill()
		}
	}
	if h.proxy != nil {
		h.proxy.Close()
	}
	if h.client != nil && testkafka.External() && h.input != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := testkafka.DeleteTopics(ctx, h.client, h.input, h.dlq); err != nil {
			h.logf("%v", err)
		}
		cancel()
	}
	if h.client != nil {
		if tr, ok := h.client.Transport.(*kafka.Transport); ok {
			tr.CloseIdleConnections()
		}
	}
}

// member is what a worker's /readyz says of its consumer.
type member struct {
	joined     bool
	generation int32
	partitions int
	detail     string
}

// member asks worker name's admin server whether it is a member of the
// group, of which generation, with how many partitions.
func (h *Harness) member(name string) member {
	h.mu.Lock()
	addr := h.admins[name]
	h.mu.Unlock()
	resp, err := h.hc.Get("http://" + addr + "/readyz")
	if err != nil {
		return member{detail: err.Error()}
	}
	defer resp.Body.Close()
	var r admin.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return member{detail: "/readyz: " + err.Error()}
	}
	c := r.Components["consumer"]
	m := member{detail: c.Detail}
	if c.Ready {
		_, err := fmt.Sscanf(c.Detail, "generation %d, %d partitions", &m.generation, &m.partitions)
		m.joined = err == nil
	}
	return m
}

// whole reports whether every running worker is a member of one
// generation and together they hold every partition; and which
// generation, and what each said.
func (h *Harness) whole() (int32, bool, string) {
	h.mu.Lock()
	names := slices.Sorted(maps.Keys(h.workers))
	h.mu.Unlock()
	var gen int32 = -1
	sum, ok := 0, len(names) > 0
	var said []string
	for _, n := range names {
		m := h.member(n)
		said = append(said, fmt.Sprintf("%s: %s", n, m.detail))
		if !m.joined || (gen >= 0 && m.generation != gen) {
			ok = false
		}
		gen = max(gen, m.generation)
		sum += m.partitions
	}
	return gen, ok && sum == partitions, strings.Join(said, "; ")
}

// awaitAccepting waits up to a minute for the simulator to accept an event
// it had not before, or, with orDrained, for the group to have nothing
// left to publish.
func (h *Harness) awaitAccepting(ctx context.Context, what string, orDrained bool) error {
	st, err := h.simStats()
	if err != nil {
		return err
	}
	return h.await(ctx, time.Minute, what, func() bool {
		if now, err := h.simStats(); err == nil && now.Distinct > st.Distinct {
			return true
		}
		if !orDrained {
			return false
		}
		o, err := h.offsets(ctx)
		return err == nil && len(o.End) == partitions && o.TotalLag() == 0
	})
}

// awaitWhole waits up to a minute for the group to be whole, and returns
// its generation.
func (h *Harness) awaitWhole(ctx context.Context) (int32, error) {
	var gen int32
	if err := h.await(ctx, time.Minute, "the group whole before the kill", func() bool {
		g, ok, _ := h.whole()
		gen = g
		return ok
	}); err != nil {
		_, _, said := h.whole()
		return 0, fmt.Errorf("%w (%s)", err, said)
	}
	return gen, nil
}

// KillAndRestart kills worker name (SIGKILL), starts it again after down,
// and waits until the group is whole again — every worker a member of a
// generation later than the one before the kill, every partition held —
// and the simulator has accepted since; that moment is the fault's
// Recovered. The group must be whole before the kill.
func (h *Harness) KillAndRestart(ctx context.Context, name string, down time.Duration) error {
	before, err := h.awaitWhole(ctx)
	if err != nil {
		return err
	}
	f := Fault{Name: "kill -9 " + name, Start: time.Now()}
	h.KillWorker(name)
	if err := sleep(ctx, down); err != nil {
		return err
	}
	if err := h.StartWorker(name); err != nil {
		return err
	}
	f.End = time.Now()
	defer func() { h.recordFault(f) }()
	err = h.await(ctx, time.Minute, "the group whole again after the kill", func() bool {
		g, ok, _ := h.whole()
		return ok && g > before
	})
	if err != nil {
		_, _, said := h.whole()
		return fmt.Errorf("kill -9 %s at %s: %w (generation before %d; %s)", name, f.Start.Format("15:04:05.000"), err, before, said)
	}
	if err := h.awaitAccepting(ctx, "the simulator accepting again after the kill", false); err != nil {
		return err
	}
	f.Recovered = time.Now()
	h.logf("kill -9 %s: the group whole again (generation > %d) and publishing %v after the kill", name, before, f.Recovered.Sub(f.Start).Round(time.Millisecond))
	return nil
}

// members asks the group coordinator how many members the group has: the
// living ones, and the dead ones it has not removed yet — a killed member
// until its session expires, and a member whose join it accepted.
func (h *Harness) members(ctx context.Context) (int, error) {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := h.client.DescribeGroups(c, &kafka.DescribeGroupsRequest{GroupIDs: []string{h.group}})
	if err != nil {
		return 0, err
	}
	for _, g := range res.Groups {
		if g.GroupID == h.group {
			if g.Error != nil {
				return 0, g.Error
			}
			return len(g.Members), nil
		}
	}
	return 0, fmt.Errorf("no group %s in the answer", h.group)
}

// KillDuringJoin kills worker name (SIGKILL) once the group is whole,
// starts it again after down, kills the restarted process as soon as the
// coordinator has accepted its join (one member more than before the
// first kill) and while that join is still pending (the process not yet a
// member of a generation), and starts it once more at once. The fault
// starts at the second kill; Recovered is when the group is whole again —
// every running worker a member of one generation later than the one
// before, every partition held by them — and the simulator has accepted
// since, which must come within heal.
func (h *Harness) KillDuringJoin(ctx context.Context, name string, down, heal time.Duration) error {
	before, err := h.awaitWhole(ctx)
	if err != nil {
		return err
	}
	n0, err := h.members(ctx)
	if err != nil {
		return fmt.Errorf("describing the group: %w", err)
	}
	t0 := time.Now()
	h.KillWorker(name)
	if err := sleep(ctx, down); err != nil {
		return err
	}
	if err := h.StartWorker(name); err != nil {
		return err
	}
	seen := 0
	if err := h.await(ctx, 30*time.Second, "the restarted worker's join accepted by the coordinator and pending", func() bool {
		n, err := h.members(ctx)
		seen = n
		return err == nil && n > n0 && !h.member(name).joined
	}); err != nil {
		return fmt.Errorf("%w (%d members, %d before the kill; %s: %s)", err, seen, n0, name, h.member(name).detail)
	}
	f := Fault{Name: "kill -9 " + name + " with its join pending", Start: time.Now()}
	h.KillWorker(name)
	h.logf("%s killed %v after the first kill, its join pending (%d group members, %d before)", name, f.Start.Sub(t0).Round(time.Millisecond), seen, n0)
	if err := h.StartWorker(name); err != nil {
		return err
	}
	f.End = time.Now()
	defer func() { h.recordFault(f) }()
	err = h.await(ctx, heal, "the group whole again after the kills", func() bool {
		g, ok, _ := h.whole()
		return ok && g > before
	})
	if err != nil {
		_, _, said := h.whole()
		n, _ := h.members(ctx)
		return fmt.Errorf("kill -9 %s with its join pending at %s: %w (generation before %d; %d group members; %s)",
			name, f.Start.Format("15:04:05.000"), err, before, n, said)
	}
	if err := h.awaitAccepting(ctx, "the simulator accepting again after the kills (or nothing left to publish)", true); err != nil {
		return err
	}
	f.Recovered = time.Now()
	h.logf("kill -9 %s with its join pending: the group whole again (generation > %d) and publishing %v after the second kill", name, before, f.Recovered.Sub(f.Start).Round(time.Millisecond))
	return nil
}
