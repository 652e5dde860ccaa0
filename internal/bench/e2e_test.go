package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

const (
	topic       = "cxone.events"
	dlqTopic    = "cxone.events.dlq"
	group       = "cxbridge-bench"
	partitions  = 6
	keys        = 1000
	dataSize    = 900 // produce.Config.Size: records of about 1 KB
	publishPath = "/api/v2/events/publish"
	latencyHist = "cxbridge_end_to_end_latency_seconds"
)

var (
	flagRecords     = flag.Int("e2e.records", 100_000, "backlog records of each case")
	flagSlowRecords = flag.Int("e2e.slow-records", 5_000, "backlog records of ordering=partition with 20 ms of latency (≈300 events/s)")
	flagSteady      = flag.Duration("e2e.steady", 10*time.Second, "length of the steady-rate latency phase; 0 skips it")
	flagMaxInFlight = flag.Int("e2e.max-in-flight", 256, "the worker's --max-in-flight (256 is its default)")
	flagWorkerLog   = flag.Bool("e2e.worker-log", false, "print the tail of each worker's stderr")
	flagBinary      = flag.String("e2e.binary", "", "run this cxbridge binary instead of building one (to measure another version side by side)")
)

// binary is the `cxbridge` built by TestMain.
var binary string

// TestMain builds the real binary once, only when benchmarks are to run.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	if *flagBinary != "" {
		binary = *flagBinary
		os.Exit(m.Run())
	}
	testutil.Main(m, &binary)
}

type benchCase struct {
	latency    time.Duration // simulator latency of every publish
	ordering   string        // --ordering
	records    int           // backlog
	steadyRate float64       // records/s of the latency phase
}

// BenchmarkEndToEnd runs the matrix simulator latency {0, 20 ms} ×
// ordering {key, partition}. Run it with -benchtime 1x: one iteration is
// one full workload (fresh broker, simulator and group).
//
// Metrics, per case:
//   - events/s: backlog records / (worker start → every offset committed),
//     worker start-up (process, token, group join) included;
//   - drain-events/s: the same from the first acceptance (start-up excluded);
//   - CPU-s/1000ev: the worker process's user+system CPU (rusage, whole
//     life: start-up, backlog, shutdown) per 1000 backlog records;
//   - peak-RSS-MB: the worker's peak RSS (VmHWM just before SIGTERM), MiB;
//     ru-maxrss-MB: its ru_maxrss, which is NOT the worker's own (see runOnce);
//   - harness-CPU-s/1000ev: this process (embedded broker + simulator + lag
//     polling) during the backlog phase, per 1000 records;
//   - p50-ms, p99-ms: end-to-end latency under a steady load at a fixed rate
//     (1,000/s; 100/s for ordering=partition at 20 ms), from the record's
//     timestamp to its acceptance by the simulator, measured here on every
//     accepted publish; p50-hist-ms, p99-hist-ms: the same read from the
//     worker's cxbridge_end_to_end_latency_seconds histogram (linear
//     interpolation in its buckets, as histogram_quantile does);
//   - load1: the machine's 1-minute load average at the end of the backlog
//     (this benchmark's own share included): the figures are CPU-bound, so
//     read them with it on a shared machine.
func BenchmarkEndToEnd(b *testing.B) {
	testutil.SkipShort(b, "runs the worker as a process on a backlog, for minutes")
	for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
		for _, ord := range []string{"key", "partition"} {
			c := benchCase{latency: lat, ordering: ord, records: *flagRecords, steadyRate: 1000}
			if ord == "partition" && lat > 0 {
				// One record at a time per partition: 6 × 1/20 ms ≈ 300/s.
				c.records, c.steadyRate = *flagSlowRecords, 100
			}
			b.Run(fmt.Sprintf("latency=%dms/ordering=%s", lat.Milliseconds(), ord), func(b *testing.B) { runCase(b, c) })
		}
	}
}

// result is one iteration's measurements.
type result struct {
	elapsed, drain, startup time.Duration
	workerCPU, harnessCPU   time.Duration
	peakRSSKiB, maxrssKiB   int64
	load1                   float64
	p50, p99                float64 // ms, measured at the simulator
	hp50, hp99              float64 // ms, from the worker's histogram
}

func runCase(b *testing.B, c benchCase) {
	var rs []result
	for range b.N {
		b.StopTimer()
		rs = append(rs, runOnce(b, c))
	}
	b.StopTimer()
	mean := func(f func(r result) float64) float64 {
		var s float64
		for _, r := range rs {
			s += f(r)
		}
		return s / float64(len(rs))
	}
	n := float64(c.records)
	b.ReportMetric(n, "records")
	b.ReportMetric(mean(func(r result) float64 { return n / r.elapsed.Seconds() }), "events/s")
	b.ReportMetric(mean(func(r result) float64 { return n / r.drain.Seconds() }), "drain-events/s")
	b.ReportMetric(mean(func(r result) float64 { return r.startup.Seconds() }), "startup-s")
	b.ReportMetric(mean(func(r result) float64 { return r.workerCPU.Seconds() / n * 1000 }), "CPU-s/1000ev")
	b.ReportMetric(mean(func(r result) float64 { return r.harnessCPU.Seconds() / n * 1000 }), "harness-CPU-s/1000ev")
	b.ReportMetric(mean(func(r result) float64 { return float64(r.peakRSSKiB) / 1024 }), "peak-RSS-MB")
	b.ReportMetric(mean(func(r result) float64 { return float64(r.maxrssKiB) / 1024 }), "ru-maxrss-MB")
	b.ReportMetric(mean(func(r result) float64 { return r.load1 }), "load1")
	if *flagSteady > 0 {
		b.ReportMetric(mean(func(r result) float64 { return r.p50 }), "p50-ms")
		b.ReportMetric(mean(func(r result) float64 { return r.p99 }), "p99-ms")
		b.ReportMetric(mean(func(r result) float64 { return r.hp50 }), "p50-hist-ms")
		b.ReportMetric(mean(func(r result) float64 { return r.hp99 }), "p99-hist-ms")
	}
}

func runOnce(b *testing.B, c benchCase) result {
	st := newStack(b, c.latency)
	defer st.close()
	var res result

	// The backlog, written before the worker starts.
	var ps produce.Stats
	pcfg := produce.Config{Brokers: st.broker.Addrs, Topic: st.topic, Count: c.records, Keys: keys, Size: dataSize, Seed: 1}
	if err := produce.Run(context.Background(), pcfg, &ps, nil); err != nil {
		b.Fatal(err)
	}
	if lag := st.lag(b); lag != int64(c.records) {
		b.Fatalf("lag %d before the worker starts, want %d", lag, c.records)
	}

	// Throughput, CPU and memory: one worker drains the backlog.
	self0 := selfCPU()
	b.StartTimer()
	w := st.startWorker(b, "127.0.0.1:0", c.ordering)
	first, done := st.waitDrained(b, w, 30*time.Minute)
	b.StopTimer()
	res.harnessCPU = selfCPU() - self0
	res.elapsed = done.Sub(w.started)
	res.startup = first.Sub(w.started)
	res.drain = done.Sub(first)
	res.load1 = load1()
	// Peak RSS: the kernel's high-water mark of the worker's own memory,
	// read just before the SIGTERM (nothing is in flight any more). Not
	// ru_maxrss: os/exec starts children with vfork (CLONE_VM), and Linux
	// folds the parent's RSS high-water mark — this process, which holds the
	// broker's 100 MB of records — into the child's ru_maxrss at execve.
	res.peakRSSKiB = w.vmHWM(b)
	ru := w.stop(b)
	res.workerCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	res.maxrssKiB = ru.Maxrss // KiB on Linux; for comparison only (see above)

	s := st.sim.Stats()
	if s.Distinct != int64(c.records) || s.OrderViolations != 0 || s.ByStatus[http.StatusOK] != s.Accepted {
		b.Errorf("after the backlog: %+v; want %d distinct, no order violation, only 200s", s, c.records)
	}
	b.Logf("backlog %d: %v (start-up %v, drain %v), worker CPU %v, peak RSS %d KiB (ru_maxrss %d KiB), harness CPU %v, duplicates %d, load %.2f",
		c.records, res.elapsed.Round(time.Millisecond), res.startup.Round(time.Millisecond), res.drain.Round(time.Millisecond),
		res.workerCPU.Round(time.Millisecond), res.peakRSSKiB, res.maxrssKiB, res.harnessCPU.Round(time.Millisecond), s.Duplicates, res.load1)

	if *flagSteady > 0 {
		st.steady(b, c, &res)
	}
	return res
}

// steady measures the end-to-end latency at a fixed rate well under
// capacity, with a new worker of the same group (the backlog is committed).
func (st *stack) steady(b *testing.B, c benchCase, res *result) {
	addr := freeAddr(b)
	w := st.startWorker(b, addr, c.ordering)
	defer w.stop(b)
	base := "http://" + addr
	w.waitReady(b, base+"/readyz", time.Minute)

	// Warm up (connections, token, fetch loops) for 1 s at the rate, then measure.
	st.produceAt(b, c.steadyRate, int(c.steadyRate), 2)
	st.waitDrained(b, w, 5*time.Minute)
	h0 := scrapeHistogram(b, base+"/metrics")
	st.rec.start()
	n := int(c.steadyRate * flagSteady.Seconds())
	st.produceAt(b, c.steadyRate, n, 3)
	st.waitDrained(b, w, 10*time.Minute)
	ms := st.rec.stop()
	h1 := scrapeHistogram(b, base+"/metrics")

	if len(ms) < n {
		b.Errorf("steady phase: %d acceptances recorded, want %d", len(ms), n)
	}
	slices.Sort(ms)
	res.p50, res.p99 = quantile(ms, 0.50), quantile(ms, 0.99)
	res.hp50, res.hp99 = histQuantile(h0, h1, 0.50)*1000, histQuantile(h0, h1, 0.99)*1000
	b.Logf("steady %d at %.0f/s: p50 %.1f ms, p99 %.1f ms, max %.1f ms (histogram: p50 %.1f ms, p99 %.1f ms, %d observations)",
		len(ms), c.steadyRate, res.p50, res.p99, ms[len(ms)-1], res.hp50, res.hp99, h1.GetSampleCount()-h0.GetSampleCount())
}

// stack is one iteration's broker, simulator and Kafka client.
type stack struct {
	broker *testkafka.Broker
	// The input topic, the DLQ topic and the group on the broker: the
	// names below on the embedded broker, names of the iteration's own on
	// a real one.
	topic, dlq, group string
	sim               *sim.Server
	simURL            string
	rec               *recorder
	client            *kafka.Client
	close             func()
}

func newStack(b *testing.B, latency time.Duration) *stack {
	return newStackFaults(b, sim.Faults{Latency: sim.Duration(latency)})
}

func newStackFaults(b *testing.B, faults sim.Faults) *stack {
	// The embedded broker, or the real one CXBRIDGE_TEST_KAFKA_BROKERS
	// names (make bench-e2e KAFKA=1): fresh topics and group each time.
	br := testkafka.Start(b, testkafka.Config{Partitions: partitions, Topics: []string{topic, dlqTopic}})
	closeBroker := func() {
		if e := br.Embedded(); e != nil {
			e.Close()
		}
	}
	// The simulator, served as sim.Serve does but behind a recorder of
	// acceptance times (sim.Start hides its handler).
	s := sim.New(sim.Config{Faults: faults})
	rec := &recorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		closeBroker()
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: rec.wrap(s.Handler()), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(ln) }()
	return &stack{broker: br, topic: br.Topic(topic), dlq: br.Topic(dlqTopic), group: br.Group(group),
		sim: s, simURL: "http://" + ln.Addr().String(), rec: rec,
		client: br.Client(),
		close: func() {
			cancel()
			_ = srv.Close()
			closeBroker()
		}}
}

func (st *stack) lag(b *testing.B) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := consumer.ReadGroupLag(ctx, st.client, st.group, st.topic)
	if err != nil {
		b.Fatal(err)
	}
	return o.TotalLag()
}

// produceAt writes n records at rate per second, in small writes every
// 10 ms: produce.Run's rate limiter lets a burst of up to Batch records
// through (500 by default, a burst that would queue up in the worker), and
// it writes Rate/10 records per write.
func (st *stack) produceAt(b *testing.B, rate float64, n int, seed uint64) {
	var ps produce.Stats
	cfg := produce.Config{Brokers: st.broker.Addrs, Topic: st.topic, Count: n, Rate: rate, Batch: max(1, int(rate/100)),
		Keys: keys, Size: dataSize, Seed: seed}
	if err := produce.Run(context.Background(), cfg, &ps, nil); err != nil {
		b.Fatal(err)
	}
}

// waitDrained polls the group's lag every 50 ms until it is 0, and returns
// when the simulator first accepted something (to 50 ms) and when the lag
// was seen at 0.
func (st *stack) waitDrained(b *testing.B, w *worker, timeout time.Duration) (first, done time.Time) {
	accepted0 := st.sim.Stats().Accepted
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			b.Fatalf("the worker exited: %v\n%s", w.cmd.ProcessState, testutil.Tail(w.stderr.String(), 4000))
		case <-tick.C:
		}
		now := time.Now()
		if first.IsZero() && st.sim.Stats().Accepted > accepted0 {
			first = now
		}
		if st.lag(b) == 0 {
			if first.IsZero() {
				first = now
			}
			return first, time.Now()
		}
		if now.After(deadline) {
			b.Fatalf("lag not 0 after %v; worker stderr:\n%s", timeout, testutil.Tail(w.stderr.String(), 4000))
		}
	}
}

// worker is a `cxbridge run` process.
type worker struct {
	cmd     *exec.Cmd
	stderr  *testutil.SyncBuffer
	done    chan struct{}
	started time.Time
	stopped bool
}

// startWorker starts a worker process; env adds to (and overrides) its
// environment.
func (st *stack) startWorker(b *testing.B, adminAddr, ordering string, env ...string) *worker {
	cmd := exec.Command(binary, "run", "--ordering", ordering, "--max-in-flight", fmt.Sprint(*flagMaxInFlight))
	cmd.Env = append(os.Environ(),
		"CXBRIDGE_KAFKA_BROKERS="+strings.Join(st.broker.Addrs, ","),
		"CXBRIDGE_KAFKA_GROUP_ID="+st.group,
		"CXBRIDGE_KAFKA_INPUT_TOPIC="+st.topic,
		"CXBRIDGE_KAFKA_DLQ_TOPIC="+st.dlq,
		"CXBRIDGE_CXONE_BASE_URL="+st.simURL,
		"CXBRIDGE_CXONE_CLIENT_ID="+sim.DefaultClientID,
		"CXBRIDGE_CXONE_CLIENT_SECRET="+sim.DefaultClientSecret,
		"CXBRIDGE_ADMIN_ADDR="+adminAddr,
		// The committer also commits after every 1000 settled records; a
		// short interval only keeps the last partial round from adding up
		// to 1 s to the measured time.
		"CXBRIDGE_COMMIT_INTERVAL=100ms",
	)
	cmd.Env = append(cmd.Env, env...)
	w := &worker{cmd: cmd, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = w.stderr
	w.started = time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(w.done) }()
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
	})
	return w
}

// stop sends SIGTERM, waits for a clean exit and returns the process's rusage.
func (w *worker) stop(b *testing.B) *syscall.Rusage {
	if w.stopped {
		return nil
	}
	w.stopped = true
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		b.Fatalf("the worker did not exit within 1m of SIGTERM:\n%s", testutil.Tail(w.stderr.String(), 4000))
	}
	if *flagWorkerLog {
		b.Logf("worker stderr:\n%s", testutil.Tail(w.stderr.String(), 4000))
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		b.Errorf("worker exit code %d after SIGTERM:\n%s", code, testutil.Tail(w.stderr.String(), 4000))
	}
	return w.cmd.ProcessState.SysUsage().(*syscall.Rusage)
}

func (w *worker) waitReady(b *testing.B, url string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-w.done:
			b.Fatalf("the worker exited: %v\n%s", w.cmd.ProcessState, testutil.Tail(w.stderr.String(), 4000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not ready after %v:\n%s", url, timeout, testutil.Tail(w.stderr.String(), 4000))
		}
	}
}

// recorder wraps the simulator's handler: while on, it records for each
// accepted publish the time from the event's timestamp (set by the
// producer when it built the record, to the millisecond) to the moment the
// simulator answered 200.
type recorder struct {
	on atomic.Bool
	mu sync.Mutex
	ms []float64
}

func (rc *recorder) start() {
	rc.mu.Lock()
	rc.ms = rc.ms[:0]
	rc.mu.Unlock()
	rc.on.Store(true)
}

func (rc *recorder) stop() []float64 {
	rc.on.Store(false)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.ms)
}

func (rc *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rc.on.Load() || r.URL.Path != publishPath {
			h.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		now := time.Now()
		if sw.status != http.StatusOK {
			return
		}
		ts, ok := bodyTimestamp(body)
		if !ok {
			return
		}
		rc.mu.Lock()
		rc.ms = append(rc.ms, float64(now.Sub(ts))/float64(time.Millisecond))
		rc.mu.Unlock()
	})
}

// bodyTimestamp finds the event's top-level "timestamp" (the producer's
// data has no member of that name).
func bodyTimestamp(body []byte) (time.Time, bool) {
	const k = `"timestamp":"`
	i := bytes.Index(body, []byte(k))
	if i < 0 {
		return time.Time{}, false
	}
	rest := body[i+len(k):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return t, err == nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// quantile of sorted xs, linearly interpolated between closest ranks.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	pos := q * float64(len(xs)-1)
	i := int(pos)
	if i+1 >= len(xs) {
		return xs[len(xs)-1]
	}
	return xs[i] + (xs[i+1]-xs[i])*(pos-float64(i))
}

// scrapeHistogram reads the worker's end-to-end latency histogram.
func scrapeHistogram(b *testing.B, url string) *dto.Histogram {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatalf("parse %s: %v", url, err)
	}
	mf := mfs[latencyHist]
	if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetHistogram() == nil {
		b.Fatalf("%s: no histogram %s", url, latencyHist)
	}
	return mf.GetMetric()[0].GetHistogram()
}

// histQuantile estimates the q-quantile (seconds) of the observations made
// between two scrapes, h0 and h1, interpolating linearly within the bucket
// that holds it, like Prometheus's histogram_quantile: beyond the last
// bound it answers the last bound.
func histQuantile(h0, h1 *dto.Histogram, q float64) float64 {
	b0, b1 := h0.GetBucket(), h1.GetBucket()
	total := float64(h1.GetSampleCount() - h0.GetSampleCount())
	if total == 0 || len(b0) != len(b1) || len(b1) == 0 {
		return 0
	}
	rank := q * total
	var prevCum, prevBound float64
	for i := range b1 {
		cum := float64(b1[i].GetCumulativeCount() - b0[i].GetCumulativeCount())
		bound := b1[i].GetUpperBound()
		if cum >= rank {
			if cum == prevCum {
				return bound
			}
			return prevBound + (bound-prevBound)*(rank-prevCum)/(cum-prevCum)
		}
		prevCum, prevBound = cum, bound
	}
	return prevBound
}

// vmHWM is the worker's peak resident set size so far, KiB.
func (w *worker) vmHWM(b *testing.B) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err != nil {
				b.Fatalf("VmHWM %q: %v", v, err)
			}
			return kib
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", w.cmd.Process.Pid)
	return 0
}

// load1 is the 1-minute load average of the machine.
func load1() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscanf(string(data), "%f", &l)
	return l
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(b *testing.B) string {
	addr, err := testutil.FreeAddr()
	if err != nil {
		b.Fatal(err)
	}
	return addr
}
