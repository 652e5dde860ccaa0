package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// `cxbridge --version` (and -v) prints what `cxbridge version` prints.
func TestVersionFlag(t *testing.T) {
	var want bytes.Buffer
	if code := Run(context.Background(), []string{"version"}, &want, &bytes.Buffer{}); code != ExitOK {
		t.Fatalf("version: exit %d", code)
	}
	if !strings.HasPrefix(want.String(), "cxbridge ") {
		t.Fatalf("version printed %q", want.String())
	}
	for _, arg := range []string{"--version", "-version", "-v"} {
		var out, errOut bytes.Buffer
		if code := Run(context.Background(), []string{arg}, &out, &errOut); code != ExitOK || out.String() != want.String() {
			t.Errorf("cxbridge %s: exit %d, printed %q (stderr %q); want %q", arg, code, out.String(), errOut.String(), want.String())
		}
	}
}
