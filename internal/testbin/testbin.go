// Package testbin builds the cxbridge binary for the tests and benchmarks
// that run it as a separate process (cmd/cxbridge, internal/chaos,
// internal/bench).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build builds cmd/cxbridge into a new temporary directory; cleanup
// removes it.
func Build() (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "cxbridge-bin")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "cxbridge")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/cxbridge/cxbridge/cmd/cxbridge").CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, cleanup, nil
}

// Main is a TestMain: it builds the binary into *bin, runs the tests and
// exits with their code.
func Main(m *testing.M, bin *string) {
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
