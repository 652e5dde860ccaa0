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
// shutdown (the context ends); a second one exits at once.
func run() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
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
