package itest

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// rotation is a worker whose CXone client secret comes from a file, as
// --cxone-client-secret-file gives it, against a simulator that will rotate
// the secret it accepts.
type rotation struct {
	*stack
	fs   *config.FlagSet // the worker's settings, as `cxbridge run` parsed them
	file string
	logs *testutil.SyncBuffer
	run  *running
}

const rotatedSecret = "rotated-secret-5d1e9c0a"

func newRotation(t *testing.T) *rotation {
	s := newStack(t, 3, sim.Config{})
	r := &rotation{stack: s, logs: &testutil.SyncBuffer{}, file: filepath.Join(t.TempDir(), "client-secret")}
	// At info: the worker's own logging of the rotation is checked too.
	s.logs, s.logLevel = r.logs, slog.LevelInfo
	r.writeSecret(t, sim.DefaultClientSecret)
	var st bridge.Settings
	r.fs = config.NewFlagSet("run")
	st.CXone.Register(r.fs)
	if err := r.fs.Parse([]string{"--cxone-client-secret-file", r.file}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if st.CXone.ClientSecret.Value() != sim.DefaultClientSecret || st.CXone.ClientSecret.File() != r.file {
		t.Fatalf("the secret was not read from %s", r.file)
	}
	r.run = s.startWorker(func(b *bridge.Settings) { b.CXone.ClientSecret = st.CXone.ClientSecret })
	return r
}

// writeSecret replaces the file the way a mounted Secret is updated: the
// new content appears at once, whole.
func (r *rotation) writeSecret(t *testing.T, v string) {
	t.Helper()
	tmp := r.file + ".new"
	if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.file); err != nil {
		t.Fatal(err)
	}
}

// refused is how many token requests the simulator refused.
func (r *rotation) refused() int64 {
	st := r.sim.Stats()
	return st.TokenRequests - st.TokensIssued
}

// noSecretLeaked checks the worker's log and metrics for either secret.
func (r *rotation) noSecretLeaked(t *testing.T) {
	t.Helper()
	mfs, err := r.run.w.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics strings.Builder
	for _, mf := range mfs {
		metrics.WriteString(mf.String())
	}
	for _, secret := range []string{sim.DefaultClientSecret, rotatedSecret} {
		if strings.Contains(r.logs.String(), secret) {
			t.Errorf("the log holds a client secret:\n%s", r.logs.String())
		}
		if strings.Contains(metrics.String(), secret) {
			t.Errorf("the metrics hold a client secret")
		}
	}
}

// A secret rotated at CXone while its file is updated heals without a
// restart: the token endpoint refuses the old secret once, the worker reads
// the file again before its next token request, and every record is
// delivered; none is dead-lettered.
func TestClientSecretRotationAfterRefusal(t *testing.T) {
	r := newRotation(t)
	r.write(goodRecords(60, 20, 1))
	r.waitAccepted(60, 30*time.Second)
	if n := r.refused(); n != 0 {
		t.Fatalf("%d token requests refused before the rotation", n)
	}

	r.writeSecret(t, rotatedSecret)
	r.sim.RotateClientSecret(rotatedSecret)
	r.sim.RevokeTokens() // the next publish gets a 401, the next token request is refused
	r.write(goodRecords(60, 20, 2))
	r.waitAccepted(120, 60*time.Second)

	if n := r.refused(); n < 1 {
		t.Fatalf("no token request was refused: the rotation was not exercised (stats %+v)", r.sim.Stats())
	}
	if d := r.dlqRecords(); len(d) != 0 {
		t.Fatalf("%d records dead-lettered by a rotation", len(d))
	}
	if !strings.Contains(r.logs.String(), "secret file read again") {
		t.Errorf("the re-read is not logged:\n%s", r.logs.String())
	}
	r.noSecretLeaked(t)
}

// A secret file read again by what SIGHUP runs (FlagSet.ReloadSecrets,
// cli's reloadSecrets) before CXone stops accepting the old secret: the
// next token request already uses the new one, so none is refused.
func TestClientSecretRotationAfterReload(t *testing.T) {
	r := newRotation(t)
	r.write(goodRecords(60, 20, 3))
	r.waitAccepted(60, 30*time.Second)

	r.writeSecret(t, rotatedSecret)
	r.sim.RotateClientSecret(rotatedSecret) // tokens already issued stay valid
	changed, err := r.fs.ReloadSecrets()
	if err != nil || len(changed) != 1 || changed[0] != "cxone-client-secret" {
		t.Fatalf("ReloadSecrets = %v, %v; want [cxone-client-secret]", changed, err)
	}
	r.sim.RevokeTokens()
	r.write(goodRecords(60, 20, 4))
	r.waitAccepted(120, 60*time.Second)

	if n := r.refused(); n != 0 {
		t.Fatalf("%d token requests refused: the reloaded secret was not used (stats %+v)", n, r.sim.Stats())
	}
	if st := r.sim.Stats(); st.TokensIssued < 2 {
		t.Fatalf("%d tokens issued: no token was asked for after the revocation", st.TokensIssued)
	}
	r.noSecretLeaked(t)
}
