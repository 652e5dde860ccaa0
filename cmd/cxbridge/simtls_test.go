package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// simProc is a `cxbridge sim` process.
type simProc struct {
	cmd    *exec.Cmd
	stderr *testutil.SyncBuffer
	done   chan struct{}
	start  struct {
		URL    string `json:"url"`
		CAFile string `json:"ca_file"`
		Trust  string `json:"trust"`
	}
}

// startSimProcess runs `cxbridge sim args…` and waits for its start line.
func startSimProcess(t *testing.T, args ...string) *simProc {
	t.Helper()
	p := &simProc{cmd: exec.Command(binary, append([]string{"sim"}, args...)...), stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() || os.Getenv("PROC_LOG") != "" {
			t.Logf("sim stderr:\n%s", testutil.Tail(p.stderr.String(), 4000))
		}
	})
	testutil.WaitFor(t, 30*time.Second, "the simulator's start line", func() bool {
		select {
		case <-p.done:
			t.Fatalf("the simulator exited: %s", p.stderr.String())
		default:
		}
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(line, "cxone simulator listening") {
				if err := json.Unmarshal([]byte(line), &p.start); err != nil {
					t.Fatalf("start line %q: %v", line, err)
				}
				return true
			}
		}
		return false
	})
	return p
}

// stop sends SIGTERM and wants exit code 0.
func (p *simProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("simulator exit code %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the simulator did not exit after SIGTERM")
	}
}

// freeAddr returns a loopback address nothing listens on (for a process's
// admin port; another process could take it meanwhile, which loopback
// tests accept).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := testutil.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// getJSON GETs url through hc into v and returns the status (0 when the
// request failed).
func getJSON(hc *http.Client, url string, v any) int {
	resp, err := hc.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(body, v) != nil {
		return 0
	}
	return resp.StatusCode
}

type readiness struct {
	Ready      bool     `json:"ready"`
	Reasons    []string `json:"reasons"`
	Components map[string]struct {
		Ready  bool   `json:"ready"`
		Detail string `json:"detail"`
	} `json:"components"`
}

// groupLag is the lag of group on topic (records not committed).
func groupLag(t *testing.T, b *testkafka.Broker, group, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := consumer.ReadGroupLag(ctx, b.Client(), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	return o.TotalLag()
}

// topicRecords is how many records topic holds (the sum of its end offsets).
func topicRecords(t *testing.T, b *testkafka.Broker, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := b.Client()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata of %s: %v %+v", topic, err, md)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range md.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p.ID))
	}
	res, err := c.ListOffsets(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, po.Partition, po.Error)
		}
		n += po.LastOffset
	}
	return n
}

// The simulator process serves HTTPS with a certificate it generates
// (--tls-dir). A worker process trusting the generated CA through
// --cxone-ca-file publishes every record and the simulator accepts them; a
// worker without it accepts none, dead-letters none, commits nothing, and
// says why: /readyz and its log name the certificate problem.
func TestSimOverTLSProcesses(t *testing.T) {
	processTest(t)
	const n = 300
	s := startSimProcess(t, "--addr", "127.0.0.1:0", "--tls-dir", t.TempDir())
	if !strings.HasPrefix(s.start.URL, "https://127.0.0.1:") || s.start.CAFile == "" ||
		!strings.Contains(s.start.Trust, "--cxone-ca-file="+s.start.CAFile) {
		t.Fatalf("start line %+v: want an https URL and the CA file to trust", s.start)
	}
	caPEM, err := os.ReadFile(s.start.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	simTr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer simTr.CloseIdleConnections()
	simHC := &http.Client{Transport: simTr, Timeout: 5 * time.Second}
	stats := func() sim.Stats {
		t.Helper()
		var st sim.Stats
		if code := getJSON(simHC, s.start.URL+"/sim/stats", &st); code != 200 {
			t.Fatalf("GET /sim/stats over HTTPS: status %d", code)
		}
		return st
	}
	if st := stats(); st.Accepted != 0 {
		t.Fatalf("fresh simulator: %+v", st)
	}

	b := testkafka.Start(t, testkafka.Config{Partitions: 3, Topics: []string{"cxone.events", "cxone.events.dlq"}})
	e := &env{broker: b, simURL: s.start.URL, input: b.Topic("cxone.events"), dlq: b.Topic("cxone.events.dlq"), group: b.Group("cxbridge-proc")}
	untrusting := b.Group("untrusting")
	e.produce(t, n)

	adminTr := &http.Transport{}
	defer adminTr.CloseIdleConnections()
	adminHC := &http.Client{Transport: adminTr, Timeout: 5 * time.Second}

	// Without the CA: the handshake fails, no token, nothing published.
	admin := freeAddr(t)
	w := e.startWorker(t, "--kafka-group-id", untrusting, "--admin-addr", admin, "--shutdown-timeout", "2s")
	var ready readiness
	testutil.WaitFor(t, 30*time.Second, "/readyz to name the certificate problem", func() bool {
		ready = readiness{}
		code := getJSON(adminHC, "http://"+admin+"/readyz", &ready)
		tok := ready.Components["cxone_token"]
		// CXone's side is advisory: the member stays ready and says why it cannot publish.
		return code == http.StatusOK && ready.Ready && !tok.Ready && strings.Contains(tok.Detail, "x509")
	})
	detail := ready.Components["cxone_token"].Detail
	if !strings.Contains(detail, "certificate signed by unknown authority") {
		t.Errorf("cxone_token detail %q: want the unknown-authority error", detail)
	}
	t.Logf("untrusting worker /readyz cxone_token: %s", detail)
	testutil.WaitFor(t, 10*time.Second, "the log to name the certificate problem", func() bool {
		log := w.stderr.String()
		return strings.Contains(log, "token request failed") && strings.Contains(log, "certificate signed by unknown authority")
	})
	testutil.WaitFor(t, 10*time.Second, "the simulator to log the refused handshakes", func() bool {
		return strings.Contains(s.stderr.String(), "TLS handshake error")
	})
	if st := stats(); st.Accepted != 0 || st.Requests != 0 || st.TokensIssued != 0 {
		t.Fatalf("the untrusting worker reached the simulator: %+v", st)
	}
	if d := topicRecords(t, b, e.dlq); d != 0 {
		t.Fatalf("the untrusting worker dead-lettered %d records: a TLS failure is an outage, not a dead letter", d)
	}
	if lag := groupLag(t, b, untrusting, e.input); lag != n {
		t.Fatalf("untrusting group lag %d, want %d (nothing committed)", lag, n)
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("untrusting worker exit code %d after SIGTERM", code)
	}
	if lag := groupLag(t, b, untrusting, e.input); lag != n {
		t.Fatalf("after its shutdown the untrusting group's lag is %d, want %d", lag, n)
	}

	// With the CA: every record is accepted over HTTPS.
	admin = freeAddr(t)
	w = e.startWorker(t, "--cxone-ca-file", s.start.CAFile, "--admin-addr", admin)
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("%d records accepted over HTTPS", n), func() bool { return stats().Distinct >= n })
	testutil.WaitFor(t, 30*time.Second, "every offset committed", func() bool { return groupLag(t, b, e.group, e.input) == 0 })
	testutil.WaitFor(t, 10*time.Second, "the trusting worker ready", func() bool {
		ready = readiness{}
		return getJSON(adminHC, "http://"+admin+"/readyz", &ready) == 200 && ready.Ready && ready.Components["cxone_token"].Ready
	})
	st := stats()
	if st.Distinct != n || st.TokensIssued < 1 {
		t.Fatalf("simulator stats %+v, want %d distinct", st, n)
	}
	if d := topicRecords(t, b, e.dlq); d != 0 {
		t.Fatalf("%d records dead-lettered", d)
	}
	t.Logf("trusting worker: accepted %d (distinct %d, duplicates %d), tokens %d", st.Accepted, st.Distinct, st.Duplicates, st.TokensIssued)
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("trusting worker exit code %d after SIGTERM", code)
	}
	simTr.CloseIdleConnections()
	s.stop(t)
}
