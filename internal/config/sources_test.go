package config

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parseKafka parses args into Kafka settings and returns the deprecated
// names used.
func parseKafka(t *testing.T, args ...string) (Kafka, []Deprecation, error) {
	t.Helper()
	var k Kafka
	fs := NewFlagSet("run")
	k.Register(fs)
	fs.EnableConfigFile()
	var deps []Deprecation
	fs.OnDeprecated(func(d Deprecation) { deps = append(deps, d) })
	err := fs.Parse(args, &bytes.Buffer{})
	return k, deps, err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantOneDeprecation(t *testing.T, deps []Deprecation, old, new string) {
	t.Helper()
	if len(deps) != 1 || deps[0] != (Deprecation{Old: old, New: new}) {
		t.Fatalf("deprecations = %v, want exactly %s → %s", deps, old, new)
	}
	msg := deps[0].String()
	for _, want := range []string{"--" + new, EnvVar(new), "--" + old, EnvVar(old)} {
		if !strings.Contains(msg, want) {
			t.Errorf("warning %q does not name %s", msg, want)
		}
	}
}

// A deprecated flag sets its new one, with one warning naming the new name.
func TestDeprecatedFlag(t *testing.T) {
	k, deps, err := parseKafka(t, "--input-topic", "orders")
	if err != nil {
		t.Fatal(err)
	}
	if k.InputTopic != "orders" {
		t.Fatalf("InputTopic = %q", k.InputTopic)
	}
	wantOneDeprecation(t, deps, "input-topic", "kafka-input-topic")
}

// A deprecated variable sets its new flag: CXBRIDGE_CLIENT_ID is the Kafka
// client id to `run`, as it was.
func TestDeprecatedVariable(t *testing.T) {
	t.Setenv("CXBRIDGE_CLIENT_ID", "pod-7")
	k, deps, err := parseKafka(t)
	if err != nil {
		t.Fatal(err)
	}
	if k.ClientID != "pod-7" {
		t.Fatalf("ClientID = %q", k.ClientID)
	}
	wantOneDeprecation(t, deps, "client-id", "kafka-client-id")
}

// A deprecated name is a config file key too.
func TestDeprecatedConfigKey(t *testing.T) {
	path := writeFile(t, "cxbridge.yaml", "group-id: billing\n")
	k, deps, err := parseKafka(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if k.GroupID != "billing" {
		t.Fatalf("GroupID = %q", k.GroupID)
	}
	wantOneDeprecation(t, deps, "group-id", "kafka-group-id")
}

// Without a deprecated name, no warning; the new names alone work.
func TestNewNamesNoWarning(t *testing.T) {
	t.Setenv("CXBRIDGE_KAFKA_CLIENT_ID", "pod-8")
	k, deps, err := parseKafka(t, "--kafka-input-topic", "a")
	if err != nil || len(deps) != 0 || k.ClientID != "pod-8" || k.InputTopic != "a" {
		t.Fatalf("k %+v deps %v err %v", k, deps, err)
	}
}

// An old and its new name set to different values is an error naming both,
// wherever each comes from; the same value is no error.
func TestDeprecatedAndNewDiffer(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"flags", nil, []string{"--input-topic", "a", "--kafka-input-topic", "b"}},
		{"old variable, new flag", map[string]string{"CXBRIDGE_INPUT_TOPIC": "a"}, []string{"--kafka-input-topic", "b"}},
		{"old flag, new variable", map[string]string{"CXBRIDGE_KAFKA_INPUT_TOPIC": "b"}, []string{"--input-topic", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, _, err := parseKafka(t, tc.args...)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *Error, got %v", err)
			}
			for _, want := range []string{"--input-topic (CXBRIDGE_INPUT_TOPIC)", "--kafka-input-topic (CXBRIDGE_KAFKA_INPUT_TOPIC)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not name %s:\n%v", want, err)
				}
			}
		})
	}
	k, deps, err := parseKafka(t, "--input-topic", "a", "--kafka-input-topic", "a")
	if err != nil || k.InputTopic != "a" || len(deps) != 1 {
		t.Fatalf("same value: %v %v %q", err, deps, k.InputTopic)
	}
	// Durations compare by value, not spelling.
	var c CXone
	fs := NewFlagSet("run")
	c.Register(fs)
	fs.OnDeprecated(func(Deprecation) {})
	if err := fs.Parse([]string{"--max-backoff", "1m", "--cxone-max-backoff", "60s"}, &bytes.Buffer{}); err != nil || c.MaxBackoff != time.Minute {
		t.Fatalf("1m and 60s: %v %s", err, c.MaxBackoff)
	}
}

// A deprecated secret's values never appear in the error of a conflict.
func TestDeprecatedSecretConflictShowsNoSecret(t *testing.T) {
	var s Secret
	fs := NewFlagSet("sim")
	fs.SecretVar(&s, "cxone-client-secret", "x")
	fs.Deprecated("client-secret", "cxone-client-secret")
	t.Setenv("CXBRIDGE_CLIENT_SECRET", "old-hunter2")
	err := fs.Parse([]string{"--cxone-client-secret", "new-hunter2"}, &bytes.Buffer{})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "--client-secret") {
		t.Fatalf("err = %v", err)
	}
}

// --help lists the deprecated names apart, each with its new name.
func TestHelpListsDeprecatedNames(t *testing.T) {
	var k Kafka
	fs := NewFlagSet("run")
	k.Register(fs)
	var out bytes.Buffer
	if err := fs.Parse([]string{"--help"}, &out); !errors.Is(err, ErrHelp) {
		t.Fatal(err)
	}
	help := out.String()
	i := strings.Index(help, "Deprecated names")
	if i < 0 {
		t.Fatalf("no deprecated names in:\n%s", help)
	}
	if !strings.Contains(help[i:], "--client-id\n        deprecated: use --kafka-client-id (CXBRIDGE_KAFKA_CLIENT_ID)\n        env CXBRIDGE_CLIENT_ID") {
		t.Errorf("client-id is not listed as deprecated:\n%s", help[i:])
	}
	if strings.Contains(help[:i], "--client-id\n") {
		t.Error("a deprecated name is listed among the settings")
	}
}

// Precedence, one test per level: defaults < config file < environment < flags.
func TestPrecedenceDefault(t *testing.T) {
	path := writeFile(t, "c.yaml", "kafka-brokers: file:9092\n")
	k, _, err := parseKafka(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if k.InputTopic != DefaultKafka().InputTopic || k.SessionTimeout != DefaultKafka().SessionTimeout {
		t.Fatalf("a setting set nowhere is not its default: %+v", k)
	}
}

func TestPrecedenceFileOverDefault(t *testing.T) {
	path := writeFile(t, "c.yaml", "kafka-input-topic: from-file\nkafka-session-timeout: 9s\nkafka-tls: true\n")
	k, _, err := parseKafka(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if k.InputTopic != "from-file" || k.SessionTimeout != 9*time.Second || !k.TLS {
		t.Fatalf("the file did not win over the defaults: %+v", k)
	}
}

func TestPrecedenceEnvOverFile(t *testing.T) {
	path := writeFile(t, "c.yaml", "kafka-input-topic: from-file\nkafka-group-id: file-group\n")
	t.Setenv("CXBRIDGE_KAFKA_INPUT_TOPIC", "from-env")
	t.Setenv("CXBRIDGE_CONFIG", path) // the file itself named by its variable
	k, _, err := parseKafka(t)
	if err != nil {
		t.Fatal(err)
	}
	if k.InputTopic != "from-env" || k.GroupID != "file-group" {
		t.Fatalf("input %q (want from-env), group %q (want file-group)", k.InputTopic, k.GroupID)
	}
}

func TestPrecedenceFlagOverEnv(t *testing.T) {
	path := writeFile(t, "c.yaml", "kafka-input-topic: from-file\n")
	t.Setenv("CXBRIDGE_KAFKA_INPUT_TOPIC", "from-env")
	k, _, err := parseKafka(t, "--config", path, "--kafka-input-topic", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	if k.InputTopic != "from-flag" {
		t.Fatalf("input %q, want from-flag", k.InputTopic)
	}
}

// A key of the config file that is no setting is an error naming the key
// and the file; so is a bad value, an unreadable file and bad YAML.
func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"unknown key", "kafka-brokers: a:1\nkafka-brokres: b:2\n", `unknown setting "kafka-brokres"`},
		{"variable as key", "CXBRIDGE_KAFKA_BROKERS: a:1\n", `unknown setting "CXBRIDGE_KAFKA_BROKERS"`},
		{"nested key", "kafka:\n  brokers: a:1\n", `unknown setting "kafka.brokers"`},
		{"config in config", "config: other.yaml\n", `unknown setting "config"`},
		{"bad value", "kafka-session-timeout: soon\n", "kafka-session-timeout"},
		{"bad yaml", "kafka-brokers: [\n", "YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "bad.yaml", tc.content)
			_, _, err := parseKafka(t, "--config", path)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *Error, got %v", err)
			}
			for _, want := range []string{tc.want, path, "--config (CXBRIDGE_CONFIG)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not name %q:\n%v", want, err)
				}
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if _, _, err := parseKafka(t, "--config", missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file: %v", err)
	}
}

// --NAME-file reads a secret; ReloadSecrets reads it again and every copy
// of the Secret sees the new value; an unreadable file keeps the old value
// and its error names the flag, never a secret.
func TestSecretFileReload(t *testing.T) {
	path := writeFile(t, "secret", "first-s3cret\n")
	var c CXone
	fs := NewFlagSet("run")
	c.Register(fs)
	if err := fs.Parse([]string{"--cxone-client-secret-file", path}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	held := c.ClientSecret // as bridge.Settings holds it
	if held.Value() != "first-s3cret" || held.File() != path {
		t.Fatalf("secret %q from %q", held.Value(), held.File())
	}
	if changed, err := fs.ReloadSecrets(); err != nil || len(changed) != 0 {
		t.Fatalf("unchanged file: %v %v", changed, err)
	}
	if err := os.WriteFile(path, []byte("second-s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, err := fs.ReloadSecrets()
	if err != nil || len(changed) != 1 || changed[0] != "cxone-client-secret" {
		t.Fatalf("ReloadSecrets = %v, %v", changed, err)
	}
	if held.Value() != "second-s3cret" {
		t.Fatalf("the copy holds %q", held.Value())
	}
	for _, content := range []string{"", "\n"} { // a file being written, or emptied
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = fs.ReloadSecrets()
		if err == nil || !strings.Contains(err.Error(), "--cxone-client-secret-file (CXBRIDGE_CXONE_CLIENT_SECRET_FILE)") || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("empty file: %v", err)
		}
		if held.Value() != "second-s3cret" {
			t.Fatalf("an unreadable file changed the secret to %q", held.Value())
		}
	}
	os.Remove(path)
	if _, err = fs.ReloadSecrets(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("missing file: %v", err)
	}
}

// The Kafka SASL password read again is the one the next connection
// authenticates with (PLAIN's initial response holds it).
func TestKafkaSASLUsesCurrentPassword(t *testing.T) {
	path := writeFile(t, "pw", "pw-one")
	k, _, err := parseKafka(t, "--kafka-sasl-mechanism", "plain", "--kafka-sasl-username", "u", "--kafka-sasl-password-file", path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := k.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	first := func() string {
		_, ir, err := d.SASLMechanism.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return string(ir)
	}
	if got := first(); got != "\x00u\x00pw-one" {
		t.Fatalf("initial response %q", got)
	}
	if d.SASLMechanism.Name() != "PLAIN" {
		t.Fatalf("mechanism %q", d.SASLMechanism.Name())
	}
	if err := os.WriteFile(path, []byte("pw-two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ch, err := k.SASLPassword.Reload(); err != nil || !ch {
		t.Fatalf("Reload = %v, %v", ch, err)
	}
	if got := first(); got != "\x00u\x00pw-two" {
		t.Fatalf("after the reload the initial response is %q", got)
	}
}

// A config file can name a secret's file; the environment's secret file
// wins over it, as every variable wins over the file.
func TestConfigFileNamesSecretFile(t *testing.T) {
	fromFile := writeFile(t, "s1", "secret-from-config-file\n")
	cfg := writeFile(t, "c.yaml", "cxone-client-secret-file: "+fromFile+"\n")
	parse := func() CXone {
		t.Helper()
		var c CXone
		fs := NewFlagSet("run")
		c.Register(fs)
		fs.EnableConfigFile()
		if err := fs.Parse([]string{"--config", cfg}, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := parse(); c.ClientSecret.Value() != "secret-from-config-file" || c.ClientSecret.File() != fromFile {
		t.Fatalf("secret from %q", c.ClientSecret.File())
	}
	fromEnv := writeFile(t, "s2", "secret-from-env-file")
	t.Setenv("CXBRIDGE_CXONE_CLIENT_SECRET_FILE", fromEnv)
	if c := parse(); c.ClientSecret.Value() != "secret-from-env-file" {
		t.Fatalf("secret from %q, want the variable's file", c.ClientSecret.File())
	}
}
