package cli

import (
	"context"
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
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	if err := validateWorker(&s); err != nil {
		return err
	}
	level, _ := config.ParseLevel(s.Worker.LogLevel)
	log := telemetry.NewLogger(env.Stderr, s.Worker.LogFormat, level).With("pid", os.Getpid())
	w, err := bridge.NewWorker(s, log)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
