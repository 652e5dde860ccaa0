package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cxbridge/cxbridge/internal/cli"
)

// lineWriter hands every complete line written to it to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	all   bytes.Buffer
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 100)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.Reset()
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- strings.TrimSuffix(line, "\n"):
		default:
		}
	}
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func TestSimCommandServesUntilCancelled(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const secret = "not-the-default-secret"
	t.Setenv("CXBRIDGE_CLIENT_SECRET", secret)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := newLineWriter()
	var stdout bytes.Buffer
	exit := make(chan int, 1)
	go func() {
		exit <- cli.Run(ctx, []string{"sim", "--addr", "127.0.0.1:0", "--latency", "1ms"}, &stdout, stderr)
	}()

	var start struct {
		Msg, URL, Addr string
	}
	select {
	case line := <-stderr.lines:
		if err := json.Unmarshal([]byte(line), &start); err != nil || start.URL == "" {
			t.Fatalf("start line %q: %v", line, err)
		}
	case code := <-exit:
		t.Fatalf("sim exited with %d: %s", code, stderr)
	case <-time.After(10 * time.Second):
		t.Fatal("no start line")
	}

	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	resp, err := hc.Post(start.URL+"/api/v2/authorization/token", "application/x-www-form-urlencoded",
		strings.NewReader("grant_type=client_credentials&client_id=cxbridge-dev&client_secret="+secret))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("token with the secret from the environment: %d %s", resp.StatusCode, body)
	}
	resp, err = hc.Get(start.URL + "/sim/faults")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"latency":"1ms"`) {
		t.Fatalf("faults %s", body)
	}
	tr.CloseIdleConnections()

	cancel()
	select {
	case code := <-exit:
		if code != cli.ExitOK {
			t.Fatalf("exit %d, want 0: %s", code, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop after ctx ended")
	}
	if out := stderr.String(); strings.Contains(out, secret) || strings.Contains(out, "access_token") {
		t.Fatalf("a secret reached the log:\n%s", out)
	}
}

func TestSimCommandBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{[]string{"--error-rate", "2"}, nil, []string{"--error-rate", "CXBRIDGE_ERROR_RATE"}},
		{nil, map[string]string{"CXBRIDGE_ERROR_RATE": "-0.5"}, []string{"--error-rate", "CXBRIDGE_ERROR_RATE"}},
		{[]string{"--latency", "-1s", "--rate-limit", "-3", "--retry-after", "soon", "--addr", "nowhere"}, nil,
			[]string{"--latency (CXBRIDGE_LATENCY)", "--rate-limit (CXBRIDGE_RATE_LIMIT)", "--retry-after (CXBRIDGE_RETRY_AFTER)", "--addr (CXBRIDGE_ADDR)"}},
		{[]string{"--token-ttl", "10ms", "--client-id", ""}, nil, []string{"--token-ttl", "--client-id"}},
		{[]string{"--no-such-flag"}, nil, []string{"no-such-flag"}},
		{[]string{"--error-rate", "lots"}, nil, []string{"error-rate"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := cli.Run(context.Background(), append([]string{"sim"}, c.args...), &stdout, &stderr)
			if code != cli.ExitConfig {
				t.Fatalf("exit %d, want %d: %s", code, cli.ExitConfig, stderr.String())
			}
			for _, w := range c.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestSimCommandHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"sim", "--help"}, &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, w := range []string{"--addr", "127.0.0.1:8081", "CXBRIDGE_CLIENT_SECRET_FILE", "cxbridge-dev-secret",
		"cxbridge-dev-key-secret", "--error-rate", "--forbid-event-type", "--token-expiry"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("usage lacks %q", w)
		}
	}
}

func TestSimCommandListenError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	// Port 1 on a host that is not ours: the listen fails at once.
	code := cli.Run(context.Background(), []string{"sim", "--addr", "192.0.2.1:1"}, &stdout, &stderr)
	if code != cli.ExitError || !strings.Contains(stderr.String(), "listen") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
