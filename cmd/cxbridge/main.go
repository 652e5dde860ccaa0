// Command cxbridge is the Kafka → NICE CXone bridge worker and its tools.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cxbridge/cxbridge/internal/cli"
)

func main() {
	os.Exit(run())
}

// run runs the command line. The first SIGINT/SIGTERM asks for a graceful
// shutdown (the context ends); a second one exits at once. SIGHUP asks
// `cxbridge run` to read its secret files again.
func run() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if len(os.Args) > 1 && os.Args[1] == "run" { // elsewhere SIGHUP keeps its default: the terminal closed
		ctx = cli.WithReload(ctx, reloads(ctx))
	}
	exitNow := make(chan int, 1)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "cxbridge: %s: shutting down gracefully (again to exit at once)\n", s)
		cancel()
		if s, ok = <-sigs; ok {
			fmt.Fprintf(os.Stderr, "cxbridge: %s: exiting at once\n", s)
			exitNow <- 130
		}
	}()
	done := make(chan int, 1)
	go func() { done <- cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr) }()
	select {
	case code := <-done:
		return code
	case code := <-exitNow:
		return code
	}
}

// reloads turns SIGHUP into reload requests until ctx ends; signals that
// come while one is pending make one.
func reloads(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	return reload
}
