package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/transform"
)

const readmeProgram = `{eventType: ("order." + .status), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}`

// By default there is no program: records must be CXone events.
func TestTransformDefaultIsNone(t *testing.T) {
	_, w, err := parseKafkaWorker(t)
	if err != nil {
		t.Fatal(err)
	}
	if prog, err := w.Transform.Load(); prog != nil || err != nil {
		t.Fatalf("Load() = %v, %v; want no program", prog, err)
	}
}

// A program given by flag, variable or file is compiled once, by Validate,
// and Load returns that one.
func TestTransformCompiledOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "map.jq")
	if err := os.WriteFile(file, []byte("# orders to CXone\n"+readmeProgram+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"flag": {"--transform", readmeProgram},
		"file": {"--transform-file", file},
	} {
		t.Run(name, func(t *testing.T) {
			_, w, err := parseKafkaWorker(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			prog, err := w.Transform.Load()
			if err != nil || prog == nil {
				t.Fatalf("Load() = %v, %v", prog, err)
			}
			if again, _ := w.Transform.Load(); again != prog {
				t.Fatal("Load compiled the program again")
			}
			ev, err := prog.Event(context.Background(), []byte(`{"orderId":"o-1","status":"paid"}`), transform.Input{Timestamp: time.Now()})
			if err != nil || ev.EventType != "order.paid" {
				t.Fatalf("Event: %+v, %v", ev, err)
			}
		})
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("CXBRIDGE_TRANSFORM", readmeProgram)
		_, w, err := parseKafkaWorker(t)
		if err != nil {
			t.Fatal(err)
		}
		if w.Transform.Program != readmeProgram {
			t.Fatalf("Program = %q", w.Transform.Program)
		}
		if prog, _ := w.Transform.Load(); prog == nil {
			t.Fatal("no program from CXBRIDGE_TRANSFORM")
		}
	})
}

// A bad program stops start-up with one line naming the setting, its
// variable and the compiler's message with the line and column.
func TestTransformBadProgramNamesSettingAndPosition(t *testing.T) {
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.jq")
	if err := os.WriteFile(badFile, []byte("{eventType: .status,\n source: (.x +)}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	blankFile := filepath.Join(dir, "blank.jq")
	if err := os.WriteFile(blankFile, []byte("\n  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"syntax", []string{"--transform", "{eventType: .status"}, nil,
			"--transform (CXBRIDGE_TRANSFORM): invalid jq program at line 1, column 20: unexpected EOF"},
		{"syntax by variable", nil, map[string]string{"CXBRIDGE_TRANSFORM": "{eventType: .status"},
			"--transform (CXBRIDGE_TRANSFORM): invalid jq program at line 1, column 20: unexpected EOF"},
		{"syntax in file", []string{"--transform-file", badFile}, nil,
			`--transform-file (CXBRIDGE_TRANSFORM_FILE): invalid jq program at line 2, column 15: unexpected token ")"`},
		{"unknown function", []string{"--transform", "{eventType: foo(1)}"}, nil,
			"--transform (CXBRIDGE_TRANSFORM): invalid jq program: function not defined: foo/1"},
		{"environment is not readable", []string{"--transform", "{eventType: $ENV.SECRET}"}, nil, ""}, // compiles: $ENV is empty
		{"both", []string{"--transform", readmeProgram, "--transform-file", badFile}, nil,
			"--transform-file (CXBRIDGE_TRANSFORM_FILE): give either --transform or --transform-file, not both"},
		{"missing file", []string{"--transform-file", filepath.Join(dir, "nope.jq")}, nil,
			"--transform-file (CXBRIDGE_TRANSFORM_FILE): cannot read the program: open " + filepath.Join(dir, "nope.jq")},
		{"blank", []string{"--transform", "  "}, nil, "--transform (CXBRIDGE_TRANSFORM): is blank"},
		{"blank file", []string{"--transform-file", blankFile}, nil, "--transform-file (CXBRIDGE_TRANSFORM_FILE): " + blankFile + " holds no program"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, w, err := parseKafkaWorker(t, tc.args...)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "\n  "+tc.want) {
				t.Fatalf("error:\n%v\nwant a line starting %q", err, tc.want)
			}
			if prog, lerr := w.Transform.Load(); prog != nil || lerr == nil {
				t.Fatalf("Load() = %v, %v after a failed Validate", prog, lerr)
			}
		})
	}
}
