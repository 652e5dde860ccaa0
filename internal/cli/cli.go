// Package cli is the cxbridge command line: one binary with subcommands.
// Each subcommand lives in its own file and registers itself in commands.
// Run is the only entry point; it never calls os.Exit.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"github.com/cxbridge/cxbridge/internal/config"
)

// Env is what a subcommand gets from the process.
type Env struct {
	Stdout, Stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, args []string, env Env) error
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string, env Env) error) {
	commands[name] = command{summary: summary, run: run}
}

// Exit codes.
const (
	ExitOK     = 0
	ExitError  = 1
	ExitConfig = 2 // bad flags, variables or usage
)

// Run runs the subcommand named by args[0] and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := Env{Stdout: stdout, Stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return ExitConfig
		}
		return ExitOK
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "-v" { // as `cxbridge version`
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "cxbridge: unknown command %q\n\n", args[0])
		usage(stderr)
		return ExitConfig
	}
	err := cmd.run(ctx, args[1:], env)
	var cfgErr *config.Error
	switch {
	case err == nil, errors.Is(err, config.ErrHelp):
		return ExitOK
	case errors.As(err, &cfgErr), errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "cxbridge %s: %v\n", args[0], err)
		return ExitConfig
	default:
		fmt.Fprintf(stderr, "cxbridge %s: %v\n", args[0], err)
		return ExitError
	}
}

var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: cxbridge <command> [flags]   (cxbridge <command> --help lists its settings; cxbridge --version)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

// newLogger returns the JSON logger of a subcommand.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
