package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffyaml"
)

// ConfigFlag is the flag naming the config file (env CXBRIDGE_CONFIG).
const ConfigFlag = "config"

// sources is what a FlagSet knows beyond its flags: deprecated names, the
// config file and the files of secrets.
type sources struct {
	deprecated   map[string]*deprecatedName // by old flag name
	secretFiles  map[string]*string         // secret flag → the value of its -file flag
	onDeprecated func(Deprecation)
	unknownKey   string // the config file's first unknown key, set by Parse
}

func newSources() sources {
	return sources{deprecated: map[string]*deprecatedName{}, secretFiles: map[string]*string{}}
}

func (s *sources) secretFileVar(name string) *string {
	if p, ok := s.secretFiles[name]; ok {
		return p
	}
	p := new(string)
	s.secretFiles[name] = p
	return p
}

// EnableConfigFile defines --config: a YAML file of settings, one flag name
// a key, read for the settings neither given as flags nor in the
// environment. A key that is no setting of the subcommand is an error.
func (fs *FlagSet) EnableConfigFile() {
	fs.String(ConfigFlag, "", "YAML file of settings, one flag name a key (as `flag-name: value`); flags and environment variables win over it, it wins over the defaults; a key that is not a setting of this command is an error")
}

var errUnknownKey = errors.New("unknown setting")

// configParser is ffyaml's parser refusing keys that are no flag of fs
// (ff would also take a variable's name: CXBRIDGE_…; the file has one
// spelling).
func (fs *FlagSet) configParser() ff.ConfigFileParser {
	return func(r io.Reader, set func(name, value string) error) error {
		return ffyaml.Parser(r, func(name, value string) error {
			if fs.Lookup(name) == nil || name == ConfigFlag {
				if fs.unknownKey == "" {
					fs.unknownKey = name
				}
				return errUnknownKey
			}
			return set(name, value)
		})
	}
}

// parseError turns ff's error into a configuration error naming the flag,
// the config file or the key at fault.
func (fs *FlagSet) parseError(err error) error {
	file := ""
	if f := fs.Lookup(ConfigFlag); f != nil {
		file = f.Value.String()
	}
	where := fmt.Sprintf("--%s (%s) %s", ConfigFlag, EnvVar(ConfigFlag), file)
	var pe ffyaml.ParseError
	switch {
	case fs.unknownKey != "":
		return &Error{Lines: []string{fmt.Sprintf("%s: unknown setting %q (see --help)", where, fs.unknownKey)}}
	case errors.As(err, &pe), file != "" && strings.Contains(err.Error(), "config file"):
		return &Error{Lines: []string{fmt.Sprintf("%s: %v", where, err)}}
	case file != "" && errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		return &Error{Lines: []string{fmt.Sprintf("%s: %v", where, err)}}
	}
	return &Error{Lines: []string{err.Error() + " (see --help)"}}
}

// Deprecation is a deprecated name that was used: Old's value went to New.
type Deprecation struct{ Old, New string }

func (d Deprecation) String() string {
	return fmt.Sprintf("--%s (%s) is deprecated: use --%s (%s)", d.Old, EnvVar(d.Old), d.New, EnvVar(d.New))
}

type deprecatedName struct {
	new string
	val *rawValue
}

// rawValue keeps what a deprecated flag was set to, for its new flag.
type rawValue struct {
	raw string
	set bool
}

func (v *rawValue) String() string     { return "" }
func (v *rawValue) Set(s string) error { v.raw, v.set = s, true; return nil }

// Deprecated makes old (as a flag, its variable and a config file key) a
// deprecated name of the flag new, defined before: its value goes to new,
// with a warning (OnDeprecated). Both given, with different values, is an
// error naming both. Deprecated names are not listed by --help's settings.
func (fs *FlagSet) Deprecated(old, new string) {
	if fs.Lookup(new) == nil {
		panic("config: deprecated name " + old + " of an undefined flag " + new)
	}
	v := &rawValue{}
	fs.Var(v, old, "deprecated: use --"+new)
	fs.deprecated[old] = &deprecatedName{new: new, val: v}
}

// OnDeprecated sets what Parse does with every deprecated name used:
// by default it writes a warning line to standard error.
func (fs *FlagSet) OnDeprecated(f func(Deprecation)) { fs.onDeprecated = f }

// LogDeprecation logs d as a warning on log.
func LogDeprecation(log *slog.Logger, d Deprecation) {
	log.Warn("deprecated setting name: "+d.String(),
		"deprecated_flag", "--"+d.Old, "deprecated_env", EnvVar(d.Old), "flag", "--"+d.New, "env", EnvVar(d.New))
}

// applyDeprecated gives every deprecated name used its new flag's value.
func (fs *FlagSet) applyDeprecated(p *Problems) {
	for _, old := range fs.sortedDeprecated() {
		d := fs.deprecated[old]
		if !d.val.set {
			continue
		}
		if fs.Changed(d.new) {
			before := fs.valueOf(d.new)
			if err := fs.Set(d.new, d.val.raw); err != nil || fs.valueOf(d.new) != before {
				p.add(fmt.Sprintf("--%s (%s) and --%s (%s) are both set, to different values: set only --%s",
					old, EnvVar(old), d.new, EnvVar(d.new), d.new))
				continue
			}
		} else if err := fs.Set(d.new, d.val.raw); err != nil {
			p.Add(old, "%v", err)
			continue
		}
		dep := Deprecation{Old: old, New: d.new}
		if fs.onDeprecated != nil {
			fs.onDeprecated(dep)
		} else {
			fmt.Fprintf(os.Stderr, "cxbridge %s: warning: %s\n", fs.Name(), dep)
		}
	}
}

// valueOf is a flag's value as a string, a secret's included (for
// comparing only; never printed).
func (fs *FlagSet) valueOf(name string) string {
	f := fs.Lookup(name)
	if s, ok := f.Value.(*Secret); ok {
		return s.Value()
	}
	if g, ok := f.Value.(flag.Getter); ok {
		return fmt.Sprint(g.Get())
	}
	return f.Value.String()
}

func (fs *FlagSet) sortedDeprecated() []string {
	return slices.Sorted(maps.Keys(fs.deprecated))
}

// printDeprecated lists the deprecated names in --help.
func (fs *FlagSet) printDeprecated(out io.Writer) {
	olds := fs.sortedDeprecated()
	if len(olds) == 0 {
		return
	}
	fmt.Fprintln(out, "\nDeprecated names, still read (with a warning); giving one and its new name, with different values, is an error:")
	for _, old := range olds {
		n := fs.deprecated[old].new
		fmt.Fprintf(out, "  --%s\n        deprecated: use --%s (%s)\n        env %s, default as --%s\n", old, n, EnvVar(n), EnvVar(old), n)
	}
}

// markdownDeprecated is the README's table of deprecated names.
func (fs *FlagSet) markdownDeprecated() string {
	olds := fs.sortedDeprecated()
	if len(olds) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nDeprecated names, still read with a warning (a config file key too); giving both an old and its new name, with different values, is an error:\n\n")
	b.WriteString("| deprecated flag | deprecated variable | use |\n|---|---|---|\n")
	for _, old := range olds {
		n := fs.deprecated[old].new
		fmt.Fprintf(&b, "| `--%s` | `%s` | `--%s` (`%s`) |\n", old, EnvVar(old), n, EnvVar(n))
	}
	return b.String()
}

// SecretNames are the names of the secret flags.
func (fs *FlagSet) SecretNames() []string {
	var names []string
	for n := range fs.secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ReloadSecrets reads every secret read from a file again: the copies of
// each see the new value. It returns the flags of the secrets that
// changed; its error names the -file flag of each unreadable one (whose
// value stays), never a secret.
func (fs *FlagSet) ReloadSecrets() (changed []string, err error) {
	var errs []error
	for _, name := range fs.SecretNames() {
		s := fs.secrets[name]
		if s.File() == "" {
			continue
		}
		ch, rerr := s.Reload()
		if rerr != nil {
			errs = append(errs, fmt.Errorf("--%s-file (%s): %w", name, FileEnvVar(name), rerr))
			continue
		}
		if ch {
			changed = append(changed, name)
		}
	}
	return changed, errors.Join(errs...)
}
