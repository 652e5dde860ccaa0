package cli

import (
	"context"
	"log/slog"
	"os"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/telemetry"
)

func init() {
	register("run", "run the worker: consume, publish to CXone, dead-letter, commit", runWorker)
}

// workerFlags registers every setting of the worker on a new flag set.
func workerFlags(name string, s *bridge.Settings) *config.FlagSet {
	fs := config.NewFlagSet(name)
	s.CXone.Register(fs)
	s.Kafka.Register(fs)
	s.Worker.Register(fs)
	fs.EnableConfigFile()
	for _, n := range fs.SecretNames() {
		f := fs.Lookup(n + "-file")
		f.Usage += "; read again on SIGHUP"
		if n == "cxone-client-secret" || n == "cxone-access-key-secret" {
			f.Usage += " and before the next token request after CXone's token endpoint refused the credentials (a rotation: no restart needed)"
		}
	}
	return fs
}

// validateWorker checks every setting, one line per bad one.
func validateWorker(s *bridge.Settings) error {
	var p config.Problems
	s.CXone.Validate(&p)
	s.Kafka.Validate(&p)
	s.Worker.Validate(&p, &s.Kafka)
	return p.Err()
}

func runWorker(ctx context.Context, args []string, env Env) error {
	var s bridge.Settings
	fs := workerFlags("run", &s)
	var deprecated []config.Deprecation
	fs.OnDeprecated(func(d config.Deprecation) { deprecated = append(deprecated, d) })
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	// The logger before the validation, so that a deprecated name is warned
	// of even when another setting is bad (a bad level logs at info).
	level, ok := config.ParseLevel(s.Worker.LogLevel)
	if !ok {
		level = slog.LevelInfo
	}
	log := telemetry.NewLogger(env.Stderr, s.Worker.LogFormat, level).With("pid", os.Getpid())
	for _, d := range deprecated {
		config.LogDeprecation(log, d)
	}
	if err := validateWorker(&s); err != nil {
		return err
	}
	w, err := bridge.NewWorker(s, log)
	if err != nil {
		return err
	}
	go reloadOnSignal(ctx, fs, log)
	return w.Run(ctx)
}

type reloadKey struct{}

// WithReload returns ctx carrying reload: every value received from it
// asks `cxbridge run` to read its secret files again (cmd/cxbridge sends
// one per SIGHUP).
func WithReload(ctx context.Context, reload <-chan struct{}) context.Context {
	return context.WithValue(ctx, reloadKey{}, reload)
}

// reloadOnSignal reads the secret files again at every reload of ctx until
// ctx ends.
func reloadOnSignal(ctx context.Context, fs *config.FlagSet, log *slog.Logger) {
	reload, _ := ctx.Value(reloadKey{}).(<-chan struct{})
	if reload == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			reloadSecrets(fs, log)
		}
	}
}

// reloadSecrets reads the secret files of fs again: the next token request
// and the next Kafka connection use what they now hold. It logs which
// secrets changed, by flag name only.
func reloadSecrets(fs *config.FlagSet, log *slog.Logger) {
	changed, err := fs.ReloadSecrets()
	if err != nil {
		log.Error("secret files: some cannot be read again; their secrets stay as they were", "error", err.Error())
	}
	if changed == nil {
		changed = []string{}
	}
	log.Info("secret files read again (SIGHUP)", "changed", changed)
}
