package deploytest

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

// root is the repository root; binary is cxbridge built from it.
var root, binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain finds the repository root and builds the binary, but under
// -short, where the checks that need it skip (needBinary).
func runMain(m *testing.M) int {
	var err error
	if root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		fmt.Fprintln(os.Stderr, "deploytest:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		fmt.Fprintln(os.Stderr, "deploytest: the repository root has no go.mod:", err)
		return 1
	}
	flag.Parse() // for testing.Short
	if testing.Short() {
		return m.Run()
	}
	bin, cleanup, err := testutil.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploytest:", err)
		return 1
	}
	defer cleanup()
	binary = bin
	return m.Run()
}

// needBinary skips t under -short, where TestMain builds no binary.
func needBinary(t *testing.T) {
	t.Helper()
	testutil.SkipShort(t, "checks against the built binary's --help")
}

// path is a file of the repository.
func path(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadYAML decodes the single YAML document of rel into v.
func loadYAML(t *testing.T, rel string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, rel), v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// --- the subcommands' settings, from the real binary's --help --------------

// setting is one flag of a subcommand as its --help lists it.
type setting struct {
	Flag    string // without the dashes
	Env     string // CXBRIDGE_…
	FileEnv string // CXBRIDGE_…_FILE for a secret, else ""
	Default string // "" when none; "(secret, not shown)" for secrets
}

// settings are the flags of one subcommand.
type settings struct {
	command string
	byFlag  map[string]setting
	byEnv   map[string]setting // both the variable and, for secrets, its _FILE variable
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]*settings{}
)

// helpOf runs `cxbridge <command…> --help` and parses its settings. Each
// setting is three lines:
//
//	--cxone-base-url
//	      CXone API base URL, … (required)
//	      env CXBRIDGE_CXONE_BASE_URL, default ""
func helpOf(t *testing.T, args ...string) *settings {
	t.Helper()
	command := strings.Join(args, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if s, ok := helpCache[command]; ok {
		return s
	}
	needBinary(t)
	cmd := exec.Command(binary, append(args, "--help")...)
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("cxbridge %s --help: %v\n%s%s", command, err, out, ee.Stderr)
		}
		t.Fatalf("cxbridge %s --help: %v", command, err)
	}
	s := &settings{command: command, byFlag: map[string]setting{}, byEnv: map[string]setting{}}
	var cur *setting
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "  --"):
			cur = &setting{Flag: strings.TrimPrefix(trimmed, "--")}
		case cur != nil && strings.HasPrefix(trimmed, "env CXBRIDGE_"):
			vars, def, ok := strings.Cut(strings.TrimPrefix(trimmed, "env "), ", default ")
			if !ok {
				t.Fatalf("cxbridge %s --help: cannot read %q", command, line)
			}
			env, fileEnv, _ := strings.Cut(vars, " or ")
			cur.Env, cur.FileEnv = env, fileEnv
			if def != `""` {
				cur.Default = def
			}
			s.byFlag[cur.Flag] = *cur
			s.byEnv[cur.Env] = *cur
			if cur.FileEnv != "" {
				s.byEnv[cur.FileEnv] = *cur
			}
			cur = nil
		}
	}
	if len(s.byFlag) == 0 {
		t.Fatalf("cxbridge %s --help lists no settings:\n%s", command, out)
	}
	helpCache[command] = s
	return s
}

// cleanEnv is the environment without CXBRIDGE_* variables, so that --help
// shows the built-in defaults.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CXBRIDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

// hasCommand reports whether the binary has the subcommand.
func hasCommand(t *testing.T, command string) bool {
	t.Helper()
	needBinary(t)
	cmd := exec.Command(binary, command, "--help")
	cmd.Env = cleanEnv()
	return cmd.Run() == nil
}

// flagArgs reads --name value / --name=value pairs from args (a subcommand's
// arguments after its name), and a problem for each argument that is not a
// flag of the subcommand. Flags of these subcommands all take a value but
// the boolean ones, which deploy files give as --name=true.
func flagArgs(s *settings, args []string) (map[string]string, []string) {
	got := map[string]string{}
	var problems []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			problems = append(problems, fmt.Sprintf("cxbridge %s: argument %q is not a flag", s.command, a))
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		st, ok := s.byFlag[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("cxbridge %s has no flag --%s", s.command, name))
			continue
		}
		if !hasValue {
			if st.Default == "true" || st.Default == "false" {
				value = "true"
			} else if i+1 < len(args) {
				i++
				value = args[i]
			} else {
				problems = append(problems, fmt.Sprintf("cxbridge %s: --%s has no value", s.command, name))
			}
		}
		got[name] = value
	}
	return got, problems
}

// checkValue returns a problem when value does not fit the kind of the
// setting's default: a duration, a bool or a number.
func checkValue(where string, st setting, value string) string {
	def := st.Default
	switch {
	case def == "true" || def == "false":
		if _, err := strconv.ParseBool(value); err != nil {
			return fmt.Sprintf("%s: %s=%q is not a bool", where, st.Env, value)
		}
	case isDuration(def):
		if _, err := time.ParseDuration(value); err != nil {
			return fmt.Sprintf("%s: %s=%q is not a duration: %v", where, st.Env, value, err)
		}
	case isNumber(def):
		if _, err := strconv.ParseFloat(value, 64); err != nil {
			return fmt.Sprintf("%s: %s=%q is not a number", where, st.Env, value)
		}
	}
	return ""
}

// ptr prints an optional number.
func ptr[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func isDuration(s string) bool {
	if isNumber(s) {
		return false
	}
	_, err := time.ParseDuration(s)
	return err == nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// effective is a setting's value for a process given its environment and
// flags: the flag, else the variable, else the default.
func effective(s *settings, flags, env map[string]string, flag string) string {
	st, ok := s.byFlag[flag]
	if !ok {
		panic("cxbridge " + s.command + " has no flag --" + flag)
	}
	if v, ok := flags[flag]; ok {
		return v
	}
	if v, ok := env[st.Env]; ok {
		return v
	}
	return st.Default
}

// portOf is the port of a host:port address (":8090" included).
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// simDefaults are the client id and secret the simulator accepts when none
// is configured (internal/sim), checked against what `cxbridge sim --help`
// says.
func simDefaults(t *testing.T) (id, secret string) {
	t.Helper()
	if got := helpOf(t, "sim").byFlag["cxone-client-id"].Default; got != sim.DefaultClientID {
		t.Fatalf("cxbridge sim --help: --cxone-client-id default %q, internal/sim says %q", got, sim.DefaultClientID)
	}
	return sim.DefaultClientID, sim.DefaultClientSecret
}
