package testutil

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build builds cmd/cxbridge into a new temporary directory with the go
// command of the toolchain running the tests; cleanup removes it.
func Build() (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "cxbridge-bin")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "cxbridge")
	out, err := exec.Command(GoTool(), "build", "-o", bin, "github.com/cxbridge/cxbridge/cmd/cxbridge").CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build ./cmd/cxbridge: %w\n%s", err, out)
	}
	return bin, cleanup, nil
}

// GoTool is the go command: the one of the toolchain running the tests
// (go test puts its GOROOT/bin first on PATH and sets GOROOT), else the
// one on PATH.
func GoTool() string {
	if gr := os.Getenv("GOROOT"); gr != "" {
		p := filepath.Join(gr, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// Main is the TestMain of a package whose tests run the cxbridge binary
// as a process: it builds the binary into *bin, runs the tests, removes
// the binary and exits with their code. Under -short it builds nothing
// (*bin stays empty): the tests that run the binary skip there (SkipShort).
func Main(m *testing.M, bin *string) {
	if !flag.Parsed() {
		flag.Parse() // for testing.Short
	}
	if testing.Short() {
		os.Exit(m.Run())
	}
	path, cleanup, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}
