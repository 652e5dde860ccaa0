// Package config reads a subcommand's settings from its flags, from
// CXBRIDGE_* environment variables and from a YAML config file (--config),
// in that order of precedence over the defaults; reads secrets from files
// (--NAME-file, CXBRIDGE_NAME_FILE) and reads them again on demand (Reload);
// keeps deprecated names working with a warning; validates the settings
// with one line per bad setting naming the flag and the variable; and keeps
// secret values out of every printout.
//
// It does not know what the settings mean beyond their validation: the
// subcommands own their setting structs.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/peterbourgon/ff/v3"
)

// EnvPrefix is the prefix of every environment variable.
const EnvPrefix = "CXBRIDGE"

// EnvVar is the environment variable of a flag: --cxone-base-url ↔ CXBRIDGE_CXONE_BASE_URL.
func EnvVar(flagName string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// FileEnvVar is the variable naming a file that holds a secret flag's value.
func FileEnvVar(flagName string) string { return EnvVar(flagName) + "_FILE" }

// FlagSet is a flag.FlagSet that knows which of its flags are secrets.
type FlagSet struct {
	*flag.FlagSet
	secrets map[string]*Secret
	sources // deprecated names, the config file, secret files: sources.go
}

// NewFlagSet returns a FlagSet for subcommand name whose usage lists every
// setting with its variable and default.
func NewFlagSet(name string) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), secrets: map[string]*Secret{}, sources: newSources()}
	fs.SetOutput(io.Discard)
	return fs
}

// SecretVar defines a secret flag, and --NAME-file: a file holding its
// value, read again by ReloadSecrets. It is never printed.
func (fs *FlagSet) SecretVar(s *Secret, name, usage string) {
	fs.Var(s, name, usage+" (or --"+name+"-file)")
	fs.secrets[name] = s
	fs.StringVar(fs.secretFileVar(name), name+"-file", "",
		"file holding --"+name+" (trailing line ends dropped)")
}

// ErrHelp is returned by Parse when -h or --help was asked for; the usage has
// then been written.
var ErrHelp = flag.ErrHelp

// Parse reads args, then the environment for flags not given, then the
// config file (--config) for flags still not given, then the secret files
// (--NAME-file) of secrets not given. Deprecated names set their new ones,
// a warning each (OnDeprecated). Usage goes to out on --help.
func (fs *FlagSet) Parse(args []string, out io.Writer) error {
	opts := []ff.Option{ff.WithEnvVarPrefix(EnvPrefix)}
	if fs.Lookup(ConfigFlag) != nil {
		opts = append(opts, ff.WithConfigFileFlag(ConfigFlag), ff.WithConfigFileParser(fs.configParser()))
	}
	err := ff.Parse(fs.FlagSet, args, opts...)
	if errors.Is(err, flag.ErrHelp) {
		fs.PrintUsage(out)
		return ErrHelp
	}
	if err != nil { // an unknown flag or setting, an unparsable value, an unreadable config file
		return fs.parseError(err)
	}
	var probs Problems
	fs.applyDeprecated(&probs)
	for name, s := range fs.secrets {
		path := *fs.secretFileVar(name)
		if path == "" || fs.Changed(name) {
			continue
		}
		v, err := readSecretFile(path)
		if err != nil {
			probs.Add(name+"-file", "cannot read the secret file: %v", err)
			continue
		}
		s.c = newCell(v, path)
	}
	return probs.Err()
}

// PrintUsage writes every setting: flag, variable, default and usage.
func (fs *FlagSet) PrintUsage(out io.Writer) {
	fmt.Fprintf(out, "Usage: cxbridge %s [flags]\n\nEvery flag can also be set by its environment variable; flags win.\n", fs.Name())
	if fs.Lookup(ConfigFlag) != nil {
		fmt.Fprintf(out, "Settings neither given as flags nor in the environment are read from --%s (YAML: one flag name a key).\n", ConfigFlag)
	}
	fmt.Fprintln(out)
	for _, name := range fs.names() {
		f := fs.Lookup(name)
		fmt.Fprintf(out, "  --%s\n", name)
		fmt.Fprintf(out, "        %s\n", f.Usage)
		env := EnvVar(name)
		if _, secret := fs.secrets[name]; secret {
			env += " or " + FileEnvVar(name)
		}
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		if _, secret := fs.secrets[name]; secret {
			def = "(secret, not shown)"
		}
		fmt.Fprintf(out, "        env %s, default %s\n", env, def)
	}
	fs.printDeprecated(out)
}

// Markdown returns every setting as Markdown table rows: flag, variable,
// default, meaning (the README's configuration table).
func (fs *FlagSet) Markdown() string {
	var b strings.Builder
	b.WriteString("| flag | environment variable | default | meaning |\n|---|---|---|---|\n")
	for _, name := range fs.names() {
		f := fs.Lookup(name)
		env := "`" + EnvVar(name) + "`"
		def := "`" + f.DefValue + "`"
		if f.DefValue == "" {
			def = ""
		}
		if _, secret := fs.secrets[name]; secret {
			def = "(secret)"
		}
		fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", name, env, def, strings.ReplaceAll(f.Usage, "|", "\\|"))
	}
	b.WriteString(fs.markdownDeprecated())
	return b.String()
}

// names are the flags' names, sorted, less the deprecated ones.
func (fs *FlagSet) names() []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if _, old := fs.deprecated[f.Name]; !old {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	return names
}

// Problems collects one line per bad setting.
type Problems struct{ lines []string }

// Add records a problem with flag name: the line names the flag and its variable.
func (p *Problems) Add(name, format string, args ...any) {
	p.add(fmt.Sprintf("--%s (%s): %s", name, EnvVar(name), fmt.Sprintf(format, args...)))
}

func (p *Problems) add(line string) { p.lines = append(p.lines, line) }

// Err returns nil when there is no problem, else an *Error.
func (p *Problems) Err() error {
	if len(p.lines) == 0 {
		return nil
	}
	return &Error{Lines: p.lines}
}

// Error is a bad configuration: one line per bad setting.
type Error struct{ Lines []string }

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Lines, "\n  ")
}

// Changed reports whether the flag was given, on the command line or by
// its environment variable.
func (fs *FlagSet) Changed(name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}
