package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cxbridge/cxbridge/internal/event"
)

// The README's example program, as given there.
const readmeTransform = `{eventType: ("order." + .status), source: "shop", timestamp: $timestamp, correlationId: .orderId, data: .}`

// runCLI runs cxbridge with args as a user types them.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTransformREADMEExample(t *testing.T) {
	records := writeFile(t, "orders.jsonl",
		`{"orderId":"o-1001","status":"shipped","customer":{"id":12345678901234567890}}`+"\n"+
			`{"orderId":"o-1002","status":"cancelled","total":12.50}`+"\n")
	code, out, errOut := runCLI(t, "transform", "--transform", readmeTransform, "--file", records,
		"--record-timestamp", "2024-01-02T04:04:05.678+01:00", "--record-topic", "orders", "--record-partition", "2", "--record-offset", "40",
		"--record-header", "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if code != ExitOK {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	// The publish body of each record, in order: correlationId from the
	// program, traceId from the traceparent header, numbers exact.
	want := `{"eventType":"order.shipped","source":"shop","timestamp":"2024-01-02T03:04:05.678Z","correlationId":"o-1001","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","data":{"customer":{"id":12345678901234567890},"orderId":"o-1001","status":"shipped"}}` + "\n" +
		`{"eventType":"order.cancelled","source":"shop","timestamp":"2024-01-02T03:04:05.678Z","correlationId":"o-1002","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","data":{"orderId":"o-1002","status":"cancelled","total":12.50}}` + "\n"
	if out != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if errOut != "" {
		t.Fatalf("stderr: %s", errOut)
	}
}

// Standard input, one JSON document over several lines, the program from a
// file; without a traceparent the ids are derived from the record's
// coordinates, as the worker derives them.
func TestTransformStdinDocumentAndProgramFile(t *testing.T) {
	program := writeFile(t, "order.jq", "# orders to CXone\n{\n  eventType: (\"order.\" + .status),\n  source: $headers.origin,\n  timestamp: $timestamp,\n  data: {order: .orderId, key: $key, topic: $topic, at: $offset}\n}\n")
	stdin := writeFile(t, "order.json", "{\n  \"orderId\": \"o-7\",\n  \"status\": \"paid\"\n}\n")
	f, err := os.Open(stdin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = saved }()

	code, out, errOut := runCLI(t, "transform", "--transform-file", program, "--record-key", "cust-9",
		"--record-header", "origin=web", "--record-header", "origin=shop", "--record-offset", "5", "--record-timestamp", "2024-01-02T03:04:05Z")
	if code != ExitOK {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	rec := event.Record{Topic: "cxone.events", Partition: 0, Offset: 5}
	corr, trace := event.RecordIDs(rec)
	want := `{"eventType":"order.paid","source":"shop","timestamp":"2024-01-02T03:04:05.000Z","correlationId":"` + corr + `","traceId":"` + trace + `","data":{"at":5,"key":"cust-9","order":"o-7","topic":"cxone.events"}}` + "\n"
	if out != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", out, want)
	}
}

// Each record gets its line: the event, or the DLQ reason and error the
// worker would record; exit 1 when any record would be dead-lettered.
func TestTransformDeadLetters(t *testing.T) {
	for _, tc := range []struct {
		name, program, records string
		want                   []string // one line per record
	}{
		{
			name:    "not JSON",
			program: readmeTransform,
			records: "order o-1 shipped\n" + `{"orderId":"o-2","status":"paid"}` + "\n" + "{\"orderId\":\"\xff\"}\n",
			want: []string{
				`dlq reason=invalid_json: transform: record value is not valid JSON: invalid character 'o' looking for beginning of value`,
				`{"eventType":"order.paid",`,
				`dlq reason=invalid_json: transform: record value is not valid UTF-8`,
			},
		},
		{
			name:    "a string",
			program: `"order." + .status`,
			records: `{"status":"paid"}`,
			want:    []string{`dlq reason=transform_failed: transform: program yielded a string, want an object`},
		},
		{
			name:    "program error",
			program: readmeTransform,
			records: `{"orderId":"o-1","status":3}`,
			want:    []string{`dlq reason=transform_failed: transform: cannot add: string ("order.") and number (3)`},
		},
		{
			name:    "several values",
			program: `.[] | {eventType: "x", source: "s", timestamp: $timestamp}`,
			records: `[1,2]`,
			want:    []string{`dlq reason=transform_failed: transform: program yielded 2 values, want one object`},
		},
		{
			name:    "missing field",
			program: `{eventType: ("order." + .status), timestamp: $timestamp, data: .}`,
			records: `{"status":"paid"}`,
			want:    []string{`dlq reason=invalid_event: event: source: is required`},
		},
		{
			name:    "bad field",
			program: `{eventType: ("order." + .status), source: "shop", timestamp: .at, data: .}`,
			records: `{"status":"paid","at":"yesterday"}`,
			want:    []string{`dlq reason=invalid_event: event: timestamp: must be ISO 8601 UTC like 2024-01-02T03:04:05Z or 2024-01-02T03:04:05.678Z, got "yesterday"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "transform", "--transform", tc.program, "--file", writeFile(t, "records", tc.records),
				"--record-timestamp", "2024-01-02T03:04:05Z")
			if code != ExitError {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, ExitError, out, errOut)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(tc.want), out)
			}
			failed := 0
			for i, line := range lines {
				if strings.HasPrefix(tc.want[i], "dlq ") {
					failed++
					if line != tc.want[i] {
						t.Errorf("line %d:\n got %s\nwant %s", i+1, line, tc.want[i])
					}
				} else if !strings.HasPrefix(line, tc.want[i]) {
					t.Errorf("line %d: got %s, want an event starting %s", i+1, line, tc.want[i])
				}
			}
			wantErr := fmt.Sprintf("cxbridge transform: %d of %d records would go to the DLQ\n", failed, len(lines))
			if errOut != wantErr {
				t.Fatalf("stderr %q, want %q", errOut, wantErr)
			}
		})
	}
}

// A bad program or bad usage: exit 2, the message names the setting (and
// locates a syntax error); no record is read.
func TestTransformBadProgramOrUsage(t *testing.T) {
	records := writeFile(t, "r.json", `{"status":"paid"}`)
	programFile := writeFile(t, "bad.jq", "{\n  eventType: .status,\n  source: \"shop\" |\n}\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"syntax error", []string{"--transform", `{eventType: .status, source: }`},
			`--transform (CXBRIDGE_TRANSFORM): invalid jq program at line 1, column 30: unexpected token "}"`},
		{"syntax error in a file", []string{"--transform-file", programFile},
			`--transform-file (CXBRIDGE_TRANSFORM_FILE): invalid jq program at line 4, column 1: unexpected token "}"`},
		{"unknown function", []string{"--transform", `{eventType: upcase(.status)}`},
			`--transform (CXBRIDGE_TRANSFORM): invalid jq program: function not defined: upcase/1`},
		{"no program", nil,
			`--transform (CXBRIDGE_TRANSFORM): a program is required (or --transform-file)`},
		{"both", []string{"--transform", ".", "--transform-file", programFile},
			`--transform-file (CXBRIDGE_TRANSFORM_FILE): give either --transform or --transform-file, not both`},
		{"no program file", []string{"--transform-file", filepath.Join(t.TempDir(), "missing.jq")},
			`--transform-file (CXBRIDGE_TRANSFORM_FILE): cannot read the program: `},
		{"bad timestamp", []string{"--transform", ".", "--record-timestamp", "yesterday"},
			`--record-timestamp (CXBRIDGE_RECORD_TIMESTAMP): want RFC 3339 like 2024-01-02T03:04:05.678Z, got "yesterday"`},
		{"bad header", []string{"--transform", ".", "--record-header", "novalue"},
			`invalid value "novalue" for flag -record-header: want key=value, got "novalue"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"transform"}, tc.args...), "--file", records)
			code, out, errOut := runCLI(t, args...)
			if code != ExitConfig {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, ExitConfig, out, errOut)
			}
			if out != "" || !strings.HasPrefix(errOut, "cxbridge transform: invalid configuration:\n") || !strings.Contains(errOut, tc.want) {
				t.Fatalf("stdout %q\nstderr %q\nwant stderr containing %q", out, errOut, tc.want)
			}
		})
	}
}
