package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/devstack"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

var binary string

// TestMain builds the real binary once: these tests run it as a process.
func TestMain(m *testing.M) { testutil.Main(m, &binary) }

// env is a broker (the embedded one, or the real one testkafka's
// environment names) with the input and DLQ topics, and a simulator.
type env struct {
	broker *testkafka.Broker
	sim    *sim.Server
	simURL string
	// The input topic, DLQ topic and group of the test on its broker.
	input, dlq, group string
}

func newEnv(t *testing.T, faults sim.Faults) *env {
	t.Helper()
	b := testkafka.Start(t, testkafka.Config{Partitions: 6, Topics: []string{"cxone.events", "cxone.events.dlq"}})
	ctx, cancel := context.WithCancel(context.Background())
	s, url, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return &env{broker: b, sim: s, simURL: url, input: b.Topic("cxone.events"), dlq: b.Topic("cxone.events.dlq"), group: b.Group("cxbridge-proc")}
}

// worker is a `cxbridge run` process.
type worker struct {
	cmd    *exec.Cmd
	stderr *testutil.SyncBuffer
	done   chan struct{}
}

func (e *env) startWorker(t *testing.T, extra ...string) *worker {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"run"}, extra...)...)
	cmd.Env = append(os.Environ(),
		// The shipped settings but for where the parts are: no timing tuned.
		"CXBRIDGE_KAFKA_BROKERS="+e.broker.Addrs[0],
		"CXBRIDGE_CXONE_BASE_URL="+e.simURL,
		"CXBRIDGE_CXONE_CLIENT_ID="+sim.DefaultClientID,
		"CXBRIDGE_CXONE_CLIENT_SECRET="+sim.DefaultClientSecret,
		"CXBRIDGE_ADMIN_ADDR=127.0.0.1:0",
	)
	for name, v := range map[string]string{"CXBRIDGE_KAFKA_INPUT_TOPIC": e.input, "CXBRIDGE_KAFKA_DLQ_TOPIC": e.dlq, "CXBRIDGE_KAFKA_GROUP_ID": e.group} {
		if v != "" {
			cmd.Env = append(cmd.Env, name+"="+v)
		}
	}
	return runWorker(t, cmd)
}

// runWorker starts cmd, a worker process; it is killed when the test ends,
// and its stderr is logged when the test failed (or PROC_LOG is set).
func runWorker(t *testing.T, cmd *exec.Cmd) *worker {
	t.Helper()
	processTest(t) // the binary is not built under -short
	w := &worker{cmd: cmd, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
		if t.Failed() || os.Getenv("PROC_LOG") != "" {
			t.Logf("worker stderr:\n%s", testutil.Tail(w.stderr.String(), 8000))
		}
	})
	return w
}

// waitExit waits for the process to exit within d and returns its code.
func (w *worker) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-w.done:
		return w.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("process did not exit within %v", d)
		return -1
	}
}

func (e *env) produce(t *testing.T, n int) {
	t.Helper()
	var st produce.Stats
	err := produce.Run(context.Background(), produce.Config{Brokers: e.broker.Addrs, Topic: e.input, Count: n, Keys: 500, Size: 200, Seed: 7}, &st, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) lag(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := consumer.ReadGroupLag(ctx, e.broker.Client(), e.group, e.input)
	if err != nil {
		t.Fatal(err)
	}
	return o.TotalLag()
}

// processTest skips t under -short, where TestMain builds no binary: it
// runs cxbridge as a process, for seconds to minutes.
func processTest(t *testing.T) {
	t.Helper()
	testutil.SkipShort(t, "runs the cxbridge binary as a process")
}

// SIGTERM under load: the process stops fetching, finishes its in-flight
// records, commits and exits 0 within the shutdown timeout; after a restart
// nothing is lost and only records in flight at the signal may be
// published again.
func TestSIGTERMUnderLoad(t *testing.T) {
	processTest(t)
	e := newEnv(t, sim.Faults{Latency: sim.Duration(20 * time.Millisecond)})
	const n, maxInFlight = 4000, 64
	e.produce(t, n)
	w := e.startWorker(t, "--max-in-flight", fmt.Sprint(maxInFlight), "--shutdown-timeout", "10s")
	testutil.WaitFor(t, 60*time.Second, "500 records accepted", func() bool { return e.sim.Stats().Distinct >= 500 })
	signalAt := time.Now()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := w.waitExit(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("exited 0 %v after SIGTERM", time.Since(signalAt).Round(time.Millisecond))
	stopped := e.sim.Stats()
	if stopped.Distinct >= n {
		t.Fatalf("all %d records were done before the signal: the test proves nothing", n)
	}

	w2 := e.startWorker(t, "--max-in-flight", fmt.Sprint(maxInFlight))
	testutil.WaitFor(t, 120*time.Second, "every offset committed", func() bool { return e.lag(t) == 0 })
	st := e.sim.Stats()
	if st.Distinct != n {
		t.Fatalf("accepted %d distinct events, want %d", st.Distinct, n)
	}
	if st.Duplicates > maxInFlight {
		t.Fatalf("%d duplicates: more than the %d records that can be in flight", st.Duplicates, maxInFlight)
	}
	t.Logf("accepted %d before the signal, %d duplicates after the restart", stopped.Distinct, st.Duplicates)
	_ = w2.cmd.Process.Signal(syscall.SIGTERM)
	if code := w2.waitExit(t, 15*time.Second); code != 0 {
		t.Fatalf("second worker exit code %d", code)
	}
}

// A second signal exits at once, even while records are still draining.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	processTest(t)
	e := newEnv(t, sim.Faults{Latency: sim.Duration(time.Hour)}) // nothing ever finishes
	e.produce(t, 50)
	w := e.startWorker(t, "--shutdown-timeout", "60s")
	testutil.WaitFor(t, 30*time.Second, "publishes in flight", func() bool { return e.sim.Stats().Requests > 0 })
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	testutil.WaitFor(t, 10*time.Second, "the graceful shutdown to start", func() bool {
		return strings.Contains(w.stderr.String(), "shutting down gracefully")
	})
	start := time.Now()
	_ = w.cmd.Process.Signal(syscall.SIGINT)
	if code := w.waitExit(t, 5*time.Second); code != 130 {
		t.Fatalf("exit code %d, want 130", code)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("took %v to exit after the second signal", el)
	}
}

// A bad setting stops start-up with exit code 2 and a line naming the flag and its variable.
func TestBadSettingStopsStartup(t *testing.T) {
	processTest(t)
	cmd := exec.Command(binary, "run", "--cxone-base-url", "http://cxone.example.com", "--max-in-flight", "0")
	cmd.Env = append(os.Environ(), "CXBRIDGE_CXONE_CLIENT_SECRET=super-secret-value")
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("exit code %d, want 2; output:\n%s", code, out)
	}
	for _, want := range []string{"--cxone-base-url (CXBRIDGE_CXONE_BASE_URL)", "--max-in-flight (CXBRIDGE_MAX_IN_FLIGHT)", "--cxone-client-id (CXBRIDGE_CXONE_CLIENT_ID)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "super-secret-value") {
		t.Fatal("the secret was printed")
	}
}

// A broker that cannot be reached at start-up is retried with a clear log
// line, not a crash loop; SIGTERM still stops the process cleanly.
func TestUnreachableBrokerIsRetried(t *testing.T) {
	processTest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	e := &env{simURL: "http://127.0.0.1:1", broker: testkafka.Use(t, &devstack.Broker{Addrs: []string{dead}}),
		input: "cxone.events", dlq: "cxone.events.dlq", group: "cxbridge-proc"}
	w := e.startWorker(t)
	testutil.WaitFor(t, 30*time.Second, "the retry log line", func() bool {
		return strings.Contains(w.stderr.String(), "joining the consumer group failed; retrying") &&
			strings.Contains(w.stderr.String(), dead)
	})
	select {
	case <-w.done:
		t.Fatalf("the process exited: %s", testutil.Tail(w.stderr.String(), 2000))
	case <-time.After(time.Second):
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
