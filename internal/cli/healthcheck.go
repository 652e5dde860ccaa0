package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cxbridge/cxbridge/internal/config"
)

func init() {
	register("healthcheck", "check a worker's /healthz (for container health checks): exit 0 when healthy", runHealthcheck)
}

func runHealthcheck(ctx context.Context, args []string, env Env) error {
	fs := config.NewFlagSet("healthcheck")
	url := fs.String("url", "http://127.0.0.1:8090/healthz", "URL to check")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return &config.Error{Lines: []string{fmt.Sprintf("--url (%s): %v", config.EnvVar("url"), err)}}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s answered %d: %s", *url, resp.StatusCode, body)
	}
	fmt.Fprintf(env.Stdout, "healthy: %s\n", body)
	return nil
}
