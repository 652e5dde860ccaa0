package chaos

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The log scan finds the client secret, an issued token and a bearer
// credential, and nothing in clean lines; it counts the breaker's openings.
func TestScanLogsFindsSecrets(t *testing.T) {
	dir := t.TempDir()
	h := &Harness{secret: "chaos-secret-XYZ"}
	write := func(name, text string) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		h.procs = append(h.procs, &Proc{Name: name, LogPath: path})
	}
	write("clean.log", `{"msg":"record dead-lettered","reason":"invalid_json"}`+"\n"+`{"msg":"401","www_authenticate":"Bearer error=\"invalid_token\""}`+"\n")
	write("leaky.log", "a chaos-secret-XYZ b\n"+`{"token":"sim_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"}`+"\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz\n")
	write("breaker.log", `{"level":"WARN","msg":"circuit breaker state changed","pid":1,"from":"closed","to":"open"}`+"\n"+
		`{"level":"WARN","msg":"circuit breaker state changed","pid":1,"from":"open","to":"half-open"}`+"\n"+
		`{"level":"WARN","msg":"circuit breaker state changed","pid":1,"from":"half-open","to":"open"}`+"\n")
	got, opens, _ := h.scanLogs()
	if len(got) != 3 {
		t.Fatalf("found %d lines, want the 3 of leaky.log: %q", len(got), got)
	}
	if opens != 2 {
		t.Fatalf("counted %d breaker openings, want 2", opens)
	}
}

// ResetAll resets the connections through the proxy: the client sees a
// reset, and a new connection works.
func TestProxyResetAll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }() // echo
		}
	}()
	p, err := NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	echo := func(c net.Conn) error {
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && line != "ping\n" {
			t.Fatalf("echo %q", line)
		}
		return err
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c); err != nil {
		t.Fatal(err)
	}
	if n := p.ResetAll(); n != 1 {
		t.Fatalf("reset %d connections, want 1", n)
	}
	err = echo(c)
	// The reset shows on the read (ECONNRESET, or EOF) or, when the RST
	// arrived before the write, on the write (EPIPE): all three say the
	// proxy dropped the connection; a reply would not.
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("after the reset: %v, want a reset connection", err)
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := echo(c2); err != nil {
		t.Fatalf("a new connection: %v", err)
	}
	if p.Accepted.Load() != 2 || p.Resets.Load() != 1 {
		t.Fatalf("accepted %d reset %d", p.Accepted.Load(), p.Resets.Load())
	}
}

// The report sums counts over runs and gives the median time with its
// range; a run with a problem shows in the passed column.
func TestWriteReportMedians(t *testing.T) {
	f := []Fault{{Name: "x"}}
	rs := []Result{
		{Scenario: "s", Fault: "f", Produced: 10, Good: 9, Accepted: 9, Bad: 1, DeadLettered: 1, Faults: f, Resumed: time.Second, Settled: 5 * time.Second},
		{Scenario: "s", Fault: "f", Produced: 10, Good: 9, Accepted: 9, Bad: 1, DeadLettered: 1, Faults: f, Resumed: 3 * time.Second, Settled: 7 * time.Second, DLQDuplicates: 2},
		{Scenario: "s", Fault: "f", Produced: 10, Good: 9, Accepted: 8, Bad: 1, DeadLettered: 1, Lost: 1, Faults: f, Resumed: 2 * time.Second, Settled: 6 * time.Second, Problems: []string{"lost"}},
	}
	var b strings.Builder
	WriteReport(&b, rs)
	row := "| s | f | 3 | 30 | 27 | 26 | 0 | 3 | 3 | yes (2 again) | 1 | 2s (1s–3s) | 0s (0s–0s) | 6s (5s–7s) | **2/3** |"
	if !strings.Contains(b.String(), row) {
		t.Fatalf("report:\n%s\nwant the row\n%s", b.String(), row)
	}
	if !strings.Contains(b.String(), "PROBLEM: lost") {
		t.Fatalf("report without the problem:\n%s", b.String())
	}
}
