package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// SIGHUP makes `cxbridge run` read its secret files again: a client secret
// rotated at CXone, written to the file, then SIGHUP, and the worker's next
// token request (after CXone revoked its tokens) already carries the new
// secret: none is refused, every record is delivered, the process never
// restarted, and neither secret is in its log.
func TestSIGHUPReadsSecretFilesAgain(t *testing.T) {
	processTest(t)
	e := newEnv(t, sim.Faults{})
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	writeSecret := func(v string) {
		t.Helper()
		if err := os.WriteFile(secretFile+".new", []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(secretFile+".new", secretFile); err != nil {
			t.Fatal(err)
		}
	}
	writeSecret(sim.DefaultClientSecret)
	const rotated = "rotated-by-sighup-77c1"

	cmd := exec.Command(binary, "run")
	cmd.Env = append(os.Environ(),
		"CXBRIDGE_KAFKA_BROKERS="+e.broker.Addrs[0],
		"CXBRIDGE_KAFKA_INPUT_TOPIC="+e.input,
		"CXBRIDGE_KAFKA_DLQ_TOPIC="+e.dlq,
		"CXBRIDGE_KAFKA_GROUP_ID="+e.group,
		"CXBRIDGE_CXONE_BASE_URL="+e.simURL,
		"CXBRIDGE_CXONE_CLIENT_ID="+sim.DefaultClientID,
		"CXBRIDGE_CXONE_CLIENT_SECRET_FILE="+secretFile,
		"CXBRIDGE_ADMIN_ADDR=127.0.0.1:0",
	)
	w := runWorker(t, cmd)

	e.produce(t, 50)
	testutil.WaitFor(t, 60*time.Second, "the first 50 records committed", func() bool { return e.lag(t) == 0 })

	writeSecret(rotated)
	e.sim.RotateClientSecret(rotated) // the tokens issued stay valid
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the reload logged", func() bool {
		return strings.Contains(w.stderr.String(), `"secret files read again (SIGHUP)","pid":`) &&
			strings.Contains(w.stderr.String(), `"changed":["cxone-client-secret"]`)
	})
	select {
	case <-w.done:
		t.Fatalf("the process exited on SIGHUP: %v", cmd.ProcessState)
	default:
	}
	e.sim.RevokeTokens()
	e.produce(t, 50)
	testutil.WaitFor(t, 60*time.Second, "the next 50 records committed", func() bool { return e.lag(t) == 0 })

	st := e.sim.Stats()
	if refused := st.TokenRequests - st.TokensIssued; refused != 0 {
		t.Fatalf("%d token requests refused after SIGHUP: the new secret was not used (%+v)", refused, st)
	}
	if st.TokensIssued < 2 || st.Distinct != 100 {
		t.Fatalf("want a second token and 100 events: %+v", st)
	}
	for _, secret := range []string{sim.DefaultClientSecret, rotated} {
		if strings.Contains(w.stderr.String(), secret) {
			t.Fatalf("the log holds a client secret")
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if code := w.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
