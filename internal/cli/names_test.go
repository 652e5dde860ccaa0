package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/config"
)

// helpRow is one setting of a command's --help.
type helpRow struct {
	command, flag, usage string
}

// helpVariables reads every command's --help: the variables of its
// settings (deprecated names apart).
func helpVariables(t *testing.T) (canonical, deprecated map[string][]helpRow) {
	t.Helper()
	canonical, deprecated = map[string][]helpRow{}, map[string][]helpRow{}
	var invocations [][]string
	for name := range commands {
		if name == "dlq" {
			invocations = append(invocations, []string{"dlq", "inspect"}, []string{"dlq", "replay"})
			continue
		}
		invocations = append(invocations, []string{name})
	}
	for _, inv := range invocations {
		var out, errOut bytes.Buffer
		if code := Run(context.Background(), append(inv, "--help"), &out, &errOut); code != ExitOK {
			t.Fatalf("%v --help: exit %d: %s", inv, code, errOut.String())
		}
		cmd := strings.Join(inv, " ")
		inDeprecated := false
		var row helpRow
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			line := sc.Text()
			switch trimmed := strings.TrimSpace(line); {
			case strings.HasPrefix(line, "Deprecated names"):
				inDeprecated = true
			case strings.HasPrefix(line, "  --"):
				row = helpRow{command: cmd, flag: strings.TrimPrefix(trimmed, "--")}
			case strings.HasPrefix(trimmed, "env CXBRIDGE_"):
				vars, _, _ := strings.Cut(strings.TrimPrefix(trimmed, "env "), ", default ")
				for i, v := range strings.Split(vars, " or ") {
					if i > 0 && !inDeprecated { // a secret's X_FILE: its -file flag's own row
						continue
					}
					if inDeprecated {
						deprecated[v] = append(deprecated[v], row)
					} else {
						canonical[v] = append(canonical[v], row)
					}
				}
			case row.flag != "" && row.usage == "":
				// What `run` adds to a secret file's help (it reads the
				// file again on SIGHUP) does not change what the file is.
				row.usage, _, _ = strings.Cut(trimmed, "; read again")
			}
		}
	}
	return canonical, deprecated
}

// sameMeaning are variables that two commands read with different help
// texts for one meaning.
var sameMeaning = map[string]string{
	// The worker presents these credentials, the simulator accepts them:
	// one setting of both makes them agree (docker-compose.yml).
	"CXBRIDGE_CXONE_CLIENT_ID":              "credential",
	"CXBRIDGE_CXONE_CLIENT_SECRET":          "credential",
	"CXBRIDGE_CXONE_CLIENT_SECRET_FILE":     "credential",
	"CXBRIDGE_CXONE_ACCESS_KEY_ID":          "credential",
	"CXBRIDGE_CXONE_ACCESS_KEY_SECRET":      "credential",
	"CXBRIDGE_CXONE_ACCESS_KEY_SECRET_FILE": "credential",
}

// Every variable that `run` or `sim` reads has one meaning in every
// command that reads it: the same setting (same help text), or the same
// credential on both sides. (Before, CXBRIDGE_CLIENT_ID was the Kafka
// client id to run and the OAuth2 client id to sim.) And no variable of
// theirs is another command's deprecated name of something else.
func TestOneMeaningPerVariable(t *testing.T) {
	canonical, deprecated := helpVariables(t)
	var bad []string
	for v, rows := range canonical {
		mine := false
		for _, r := range rows {
			mine = mine || r.command == "run" || r.command == "sim"
		}
		if !mine {
			continue
		}
		if _, ok := sameMeaning[v]; !ok {
			for _, r := range rows[1:] {
				if r.usage != rows[0].usage {
					bad = append(bad, fmt.Sprintf("%s is %s --%s (%q) and %s --%s (%q)", v, rows[0].command, rows[0].flag, rows[0].usage, r.command, r.flag, r.usage))
				}
			}
		}
		if d, ok := deprecated[v]; ok {
			bad = append(bad, fmt.Sprintf("%s is a setting of %s and a deprecated name in %s", v, rows[0].command, d[0].command))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Fatalf("variables with more than one meaning:\n  %s", strings.Join(bad, "\n  "))
	}
	for _, v := range []string{"CXBRIDGE_KAFKA_CLIENT_ID", "CXBRIDGE_CXONE_CLIENT_ID", "CXBRIDGE_KAFKA_INPUT_TOPIC"} {
		if len(canonical[v]) == 0 {
			t.Errorf("no command reads %s", v)
		}
	}
	for _, r := range canonical["CXBRIDGE_CLIENT_ID"] {
		t.Errorf("CXBRIDGE_CLIENT_ID is still a setting of %s (--%s)", r.command, r.flag)
	}
}

// Every Kafka setting of the worker begins with kafka-, every CXone one
// with cxone-.
func TestSettingPrefixes(t *testing.T) {
	for _, reg := range []struct {
		prefix   string
		register func(*config.FlagSet)
	}{
		{"kafka-", func(fs *config.FlagSet) { new(config.Kafka).Register(fs) }},
		{"cxone-", func(fs *config.FlagSet) { new(config.CXone).Register(fs) }},
	} {
		fs := config.NewFlagSet("run")
		reg.register(fs)
		var deprecated []string
		fs.VisitAll(func(f *flag.Flag) {
			if strings.HasPrefix(f.Usage, "deprecated: use --") {
				deprecated = append(deprecated, f.Name)
			} else if !strings.HasPrefix(f.Name, reg.prefix) {
				t.Errorf("--%s does not begin with %s", f.Name, reg.prefix)
			}
		})
		if len(deprecated) == 0 {
			t.Errorf("no deprecated names for %s settings", reg.prefix)
		}
	}
}

// `run` logs one warning per deprecated name, naming the new one, before
// it checks the settings (so even when another setting stops it); by flag
// and by variable alike.
func TestRunWarnsOfDeprecatedNames(t *testing.T) {
	t.Setenv("CXBRIDGE_GROUP_ID", "g1")
	var out, errOut bytes.Buffer
	code := Run(context.Background(), []string{"run", "--input-topic", "in", "--max-in-flight", "0", "--log-format", "json"}, &out, &errOut)
	if code != ExitConfig {
		t.Fatalf("exit %d, want %d: %s", code, ExitConfig, errOut.String())
	}
	warned := map[string]string{}
	for _, line := range strings.Split(errOut.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec["level"] == "WARN" {
			old, _ := rec["deprecated_flag"].(string)
			if _, dup := warned[old]; dup {
				t.Errorf("%s warned of twice", old)
			}
			warned[old], _ = rec["flag"].(string)
		}
	}
	want := map[string]string{"--input-topic": "--kafka-input-topic", "--group-id": "--kafka-group-id"}
	if fmt.Sprint(warned) != fmt.Sprint(want) {
		t.Fatalf("warnings %v, want %v; stderr:\n%s", warned, want, errOut.String())
	}
	if !strings.Contains(errOut.String(), "--max-in-flight (CXBRIDGE_MAX_IN_FLIGHT)") {
		t.Errorf("the bad setting is not reported:\n%s", errOut.String())
	}
}

// The simulator's credentials' old names still work, with a warning.
func TestSimDeprecatedCredentialNames(t *testing.T) {
	t.Setenv("CXBRIDGE_CLIENT_ID", "old-id")
	var st simSettings
	fs := simFlags(&st)
	var deps []config.Deprecation
	fs.OnDeprecated(func(d config.Deprecation) { deps = append(deps, d) })
	if err := fs.Parse([]string{"--client-secret", "old-secret"}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if st.clientID != "old-id" || st.clientSecret.Value() != "old-secret" {
		t.Fatalf("id %q secret set %v", st.clientID, st.clientSecret.IsSet())
	}
	if fmt.Sprint(deps) != fmt.Sprint([]config.Deprecation{{Old: "client-id", New: "cxone-client-id"}, {Old: "client-secret", New: "cxone-client-secret"}}) {
		t.Fatalf("deprecations %v", deps)
	}
}

// `run --config` with a key that is no setting stops start-up (exit 2)
// naming the key and the file; a good file's settings are used, below the
// environment's.
func TestRunConfigFile(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("kafka-brokers: a:9092\nmax-inflight: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), []string{"run", "--config", bad}, &out, &errOut); code != ExitConfig {
		t.Fatalf("exit %d, want %d", code, ExitConfig)
	}
	for _, want := range []string{`unknown setting "max-inflight"`, bad} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr does not name %s:\n%s", want, errOut.String())
		}
	}

	good := dir + "/good.yaml"
	if err := os.WriteFile(good, []byte("max-in-flight: 0\nkafka-fetch-max-bytes: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CXBRIDGE_CONFIG", good)
	t.Setenv("CXBRIDGE_KAFKA_FETCH_MAX_BYTES", "262144") // wins over the file's bad value
	errOut.Reset()
	if code := Run(context.Background(), []string{"run"}, &out, &errOut); code != ExitConfig {
		t.Fatalf("exit %d, want %d", code, ExitConfig)
	}
	if !strings.Contains(errOut.String(), "--max-in-flight (CXBRIDGE_MAX_IN_FLIGHT): must be between 1 and 100000, got 0") {
		t.Errorf("the file's max-in-flight was not used:\n%s", errOut.String())
	}
	if strings.Contains(errOut.String(), "kafka-fetch-max-bytes") {
		t.Errorf("the file's kafka-fetch-max-bytes won over the variable:\n%s", errOut.String())
	}
}
