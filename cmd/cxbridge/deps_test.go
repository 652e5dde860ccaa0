package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/testutil"
)

// testOnly are the packages that hold test code only: the binary must
// never depend on one of them (nor on anything under internal/testutil).
var testOnly = []string{
	"github.com/cxbridge/cxbridge/internal/testutil",
	"github.com/cxbridge/cxbridge/internal/testkafka",
	"github.com/cxbridge/cxbridge/internal/chaos",
	"github.com/cxbridge/cxbridge/internal/bench",
	"github.com/cxbridge/cxbridge/internal/itest",
	"github.com/cxbridge/cxbridge/internal/deploytest",
}

// The binary links no test code: neither the testing package (nor any of
// testing/...) nor a test-only package is among its dependencies.
func TestProductDeps(t *testing.T) {
	out, err := exec.Command(testutil.GoTool(), "list", "-deps", "github.com/cxbridge/cxbridge/cmd/cxbridge").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 || !slices.Contains(deps, "github.com/cxbridge/cxbridge/internal/cli") {
		t.Fatalf("go list -deps gave %d packages, without internal/cli: not the binary's dependencies?\n%s", len(deps), out)
	}
	for _, d := range deps {
		if d == "testing" || strings.HasPrefix(d, "testing/") {
			t.Errorf("the binary depends on %s: test code in a product package (see go list -deps ./cmd/cxbridge)", d)
		}
		for _, p := range testOnly {
			if d == p || strings.HasPrefix(d, p+"/") {
				t.Errorf("the binary depends on the test-only package %s", d)
			}
		}
	}
}
