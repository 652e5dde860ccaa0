// Command kafkatool is scripts/kafka.sh's helper, in Go so that the script
// needs nothing but Java, Maven and Go:
//
//	kafkatool port                          # print a free TCP port on 127.0.0.1
//	kafkatool wait [-timeout 90s] [-pid N] ADDR   # wait until ADDR answers a metadata request
//	kafkatool certs DIR                     # a private CA and a server certificate for 127.0.0.1/localhost
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/certs"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "port":
		err = port()
	case "wait":
		err = wait(os.Args[2:])
	case "certs":
		if len(os.Args) != 3 {
			usage()
		}
		err = writeCerts(os.Args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkatool:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kafkatool port | wait [-timeout D] [-pid N] ADDR | certs DIR")
	os.Exit(2)
}

// port prints a free port below the ephemeral range (see
// testutil.FreeAddr): the broker listens on it again after a restart, by
// when an outgoing connection could have taken a port from that range.
func port() error {
	addr, err := testutil.FreeAddr()
	if err != nil {
		return err
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	fmt.Println(p)
	return nil
}

// wait asks addr for metadata until it answers with a broker, the timeout
// passes or the process pid (when given) is gone.
func wait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	timeout := fs.Duration("timeout", 90*time.Second, "give up after this long")
	pid := fs.Int("pid", 0, "stop waiting when this process has exited")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	addr := fs.Arg(0)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second}
	var last error
	for {
		if *pid > 0 && syscall.Kill(*pid, 0) != nil {
			return fmt.Errorf("the broker process %d exited before %s answered (last error: %v)", *pid, addr, last)
		}
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
		if err == nil && len(md.Brokers) > 0 {
			return nil
		}
		if err == nil {
			err = errors.New("metadata without brokers")
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer metadata within %v: %v", addr, *timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func writeCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := certs.New(10*365*24*time.Hour, "127.0.0.1", "::1", "localhost")
	if err != nil {
		return err
	}
	_, err = b.WriteFiles(dir)
	return err
}
