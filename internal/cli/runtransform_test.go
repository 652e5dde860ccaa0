package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// `cxbridge run` and `cxbridge dev` with a program that does not compile
// stop before they start anything: exit 2, one line naming the setting, its
// variable and where the compiler stopped.
func TestWorkerBadTransformStopsStartUp(t *testing.T) {
	const want = "--transform (CXBRIDGE_TRANSFORM): invalid jq program at line 1, column 30: unexpected token \"}\""
	for _, cmd := range [][]string{
		{"run", "--cxone-base-url", "http://127.0.0.1:1", "--cxone-client-id", "id", "--cxone-client-secret", "s", "--kafka-brokers", "127.0.0.1:1"},
		{"dev", "--broker-addr", "127.0.0.1:0", "--sim-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
	} {
		t.Run(cmd[0], func(t *testing.T) {
			// Should start-up go on, the deadline ends the command.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			code := Run(ctx, append(cmd, "--transform", `{eventType: .status, source: }`), &out, &errb)
			if code != ExitConfig || !strings.HasPrefix(errb.String(), "cxbridge "+cmd[0]+": invalid configuration:\n") || !strings.Contains(errb.String(), "\n  "+want+"\n") {
				t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant exit %d and the line %q", code, out.String(), errb.String(), ExitConfig, want)
			}
			if strings.Contains(out.String(), "dev: ") {
				t.Fatalf("dev started something: %q", out.String())
			}
		})
	}
}

// --shape takes the producer's shapes only, in `produce` and `dev` alike.
func TestProducerShapeValidated(t *testing.T) {
	const want = `--shape (CXBRIDGE_SHAPE): must be cxone or order, got "orders"`
	for _, cmd := range [][]string{
		{"produce", "--kafka-brokers", "127.0.0.1:1"},
		{"dev", "--only", "producer", "--kafka-brokers", "127.0.0.1:1"},
	} {
		t.Run(cmd[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			code := Run(ctx, append(cmd, "--shape", "orders"), &out, &errb)
			if code != ExitConfig || !strings.Contains(errb.String(), "\n  "+want) {
				t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant exit %d and the line %q", code, out.String(), errb.String(), ExitConfig, want)
			}
		})
	}
}
