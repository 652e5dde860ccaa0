package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parseCXone(t *testing.T, args ...string) (CXone, error) {
	t.Helper()
	var c CXone
	fs := NewFlagSet("test")
	c.Register(fs)
	if err := fs.Parse(args, &bytes.Buffer{}); err != nil {
		return c, err
	}
	var p Problems
	c.Validate(&p)
	return c, p.Err()
}

var goodArgs = []string{"--cxone-base-url", "https://api.example.com", "--cxone-client-id", "id", "--cxone-client-secret", "s3cret-value"}

// The variable of a flag is CXBRIDGE_ + the flag in upper snake case.
func TestEnvVarName(t *testing.T) {
	t.Parallel()
	if got := EnvVar("cxone-base-url"); got != "CXBRIDGE_CXONE_BASE_URL" {
		t.Fatalf("EnvVar = %q", got)
	}
	if got := FileEnvVar("cxone-client-secret"); got != "CXBRIDGE_CXONE_CLIENT_SECRET_FILE" {
		t.Fatalf("FileEnvVar = %q", got)
	}
}

// Defaults are the documented ones and the token URL derives from the base URL.
func TestDefaults(t *testing.T) {
	c, err := parseCXone(t, goodArgs...)
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenURL != "https://api.example.com/api/v2/authorization/token" {
		t.Errorf("TokenURL = %q", c.TokenURL)
	}
	if c.TokenStyle != "json" || c.Scope != "event:publish" || c.Timeout != 15*time.Second ||
		c.TokenRefreshBefore != 5*time.Minute || c.MaxRetries != 3 || c.MaxBackoff != 30*time.Second ||
		c.RateLimit != 0 || c.BreakerFailures != 5 {
		t.Errorf("defaults: %+v", c)
	}
}

// Environment variables set settings; flags win over them.
func TestEnvAndFlagPrecedence(t *testing.T) {
	t.Setenv("CXBRIDGE_CXONE_BASE_URL", "https://env.example.com")
	t.Setenv("CXBRIDGE_CXONE_MAX_RETRIES", "7")
	t.Setenv("CXBRIDGE_CXONE_CLIENT_ID", "env-id")
	t.Setenv("CXBRIDGE_CXONE_CLIENT_SECRET", "env-secret")
	c, err := parseCXone(t, "--cxone-max-retries", "2")
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL != "https://env.example.com" || c.MaxRetries != 2 || c.ClientSecret.Value() != "env-secret" {
		t.Fatalf("got base %q retries %d", c.BaseURL, c.MaxRetries)
	}
}

// A secret can come from the file named by CXBRIDGE_<NAME>_FILE; a flag wins.
func TestSecretFromFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CXBRIDGE_CXONE_CLIENT_SECRET_FILE", path)
	c, err := parseCXone(t, "--cxone-base-url", "https://a.example", "--cxone-client-id", "id")
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientSecret.Value() != "from-file" {
		t.Fatalf("secret = %q, want from-file (trailing newline trimmed)", c.ClientSecret.Value())
	}
	c, err = parseCXone(t, goodArgs...)
	if err != nil || c.ClientSecret.Value() != "s3cret-value" {
		t.Fatalf("flag should win over the file: %q %v", c.ClientSecret.Value(), err)
	}
	t.Setenv("CXBRIDGE_CXONE_CLIENT_SECRET_FILE", filepath.Join(dir, "missing"))
	_, err = parseCXone(t, "--cxone-base-url", "https://a.example", "--cxone-client-id", "id")
	if err == nil || !strings.Contains(err.Error(), "CXBRIDGE_CXONE_CLIENT_SECRET_FILE") {
		t.Fatalf("unreadable secret file: %v", err)
	}
}

// Each bad setting gives one line naming its flag and its variable.
func TestValidationNamesFlagAndVariable(t *testing.T) {
	cases := []struct {
		name string
		args []string
		flag string
	}{
		{"missing base url", []string{"--cxone-client-id", "a", "--cxone-client-secret", "b"}, "cxone-base-url"},
		{"relative url", append(goodArgs, "--cxone-base-url", "api.example.com"), "cxone-base-url"},
		{"ftp url", append(goodArgs, "--cxone-base-url", "ftp://api.example.com"), "cxone-base-url"},
		{"http to remote host", append(goodArgs, "--cxone-base-url", "http://api.example.com"), "cxone-base-url"},
		{"http token url", append(goodArgs, "--cxone-token-url", "http://auth.example.com/token"), "cxone-token-url"},
		{"credentials in url", append(goodArgs, "--cxone-base-url", "https://u:p@api.example.com"), "cxone-base-url"},
		{"bad style", append(goodArgs, "--cxone-token-style", "xml"), "cxone-token-style"},
		{"no client id", []string{"--cxone-base-url", "https://a.example", "--cxone-client-secret", "b"}, "cxone-client-id"},
		{"no client secret", []string{"--cxone-base-url", "https://a.example", "--cxone-client-id", "b"}, "cxone-client-secret"},
		{"password without key", append(goodArgs, "--cxone-token-style", "password"), "cxone-access-key-id"},
		{"password without key secret", append(goodArgs, "--cxone-token-style", "password", "--cxone-access-key-id", "k"), "cxone-access-key-secret"},
		{"zero timeout", append(goodArgs, "--cxone-timeout", "0s"), "cxone-timeout"},
		{"negative retries", append(goodArgs, "--cxone-max-retries", "-1"), "cxone-max-retries"},
		{"zero breaker failures", append(goodArgs, "--cxone-breaker-failures", "0"), "cxone-breaker-failures"},
		{"negative rate", append(goodArgs, "--cxone-rate-limit", "-5"), "cxone-rate-limit"},
		{"zero max backoff", append(goodArgs, "--cxone-max-backoff", "0s"), "cxone-max-backoff"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCXone(t, tc.args...)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *Error, got %v", err)
			}
			want := fmt.Sprintf("--%s (%s): ", tc.flag, EnvVar(tc.flag))
			found := false
			for _, l := range cerr.Lines {
				found = found || strings.HasPrefix(l, want)
			}
			if !found {
				t.Fatalf("no line starting %q in:\n%v", want, err)
			}
		})
	}
}

// Several bad settings give several lines, all at once.
func TestValidationReportsEveryProblem(t *testing.T) {
	_, err := parseCXone(t, "--cxone-timeout", "0s", "--cxone-max-retries", "-1")
	var cerr *Error
	if !errors.As(err, &cerr) || len(cerr.Lines) < 4 {
		t.Fatalf("want at least 4 lines (base url, client id, secret, timeout, retries), got %v", err)
	}
}

// http is allowed to loopback hosts and with --cxone-allow-http.
func TestHTTPAllowedForLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8081", "http://localhost:8081", "http://[::1]:8081"} {
		if _, err := parseCXone(t, append(goodArgs, "--cxone-base-url", u)...); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if _, err := parseCXone(t, append(goodArgs, "--cxone-base-url", "http://cxone.internal", "--cxone-allow-http")...); err != nil {
		t.Errorf("allow-http: %v", err)
	}
}

// --help lists every setting with its variable and default, and no secret value.
func TestHelpListsEverySetting(t *testing.T) {
	var c CXone
	c.ClientSecret = NewSecret("embedded-secret-value")
	fs := NewFlagSet("run")
	c.Register(fs)
	var out bytes.Buffer
	if err := fs.Parse([]string{"--help"}, &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	help := out.String()
	for _, name := range []string{"cxone-base-url", "cxone-token-url", "cxone-token-style", "cxone-client-id", "cxone-client-secret",
		"cxone-access-key-id", "cxone-access-key-secret", "cxone-scope", "cxone-timeout", "cxone-token-refresh-before",
		"cxone-max-retries", "cxone-max-backoff", "cxone-breaker-failures", "cxone-breaker-open-timeout", "cxone-rate-limit"} {
		if !strings.Contains(help, "--"+name+"\n") || !strings.Contains(help, "env "+EnvVar(name)) {
			t.Errorf("help lacks %s or its variable", name)
		}
	}
	for _, want := range []string{"default 15s", "default 5m0s", "default json", "CXBRIDGE_CXONE_CLIENT_SECRET_FILE"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if strings.Contains(help, "embedded-secret-value") {
		t.Error("help prints a secret")
	}
}

// A Secret never shows its value through fmt, slog, JSON or the flag default.
func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	s := NewSecret("hunter2-secret")
	type holder struct {
		S Secret
		P *Secret
	}
	h := holder{S: s, P: &s}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "secret", s, "holder", h)
	js, _ := json.Marshal(h)
	outs := []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, h, h, s, s), fmt.Sprintf("%+v", &h), buf.String(), string(js), (&s).String()}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") {
			t.Fatalf("secret leaked: %s", o)
		}
	}
	if s.Value() != "hunter2-secret" {
		t.Fatal("Value lost the secret")
	}
}
