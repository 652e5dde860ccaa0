package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/version"
)

func init() {
	register("version", "print the version", runVersion)
}

func runVersion(_ context.Context, args []string, env Env) error {
	fs := config.NewFlagSet("version")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	info := version.Get()
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(info)
	}
	_, err := fmt.Fprintf(env.Stdout, "cxbridge %s (revision %s, %s)\n", info.Version, info.Revision, info.GoVersion)
	return err
}
