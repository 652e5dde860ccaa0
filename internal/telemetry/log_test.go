package telemetry

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// auto logs JSON to anything that is not a terminal (a pipe, a file, a
// container's stderr); text and json are what they say.
func TestNewLoggerFormats(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	NewLogger(f, "auto", slog.LevelInfo).Info("to a file", "k", "v")
	var buf bytes.Buffer
	NewLogger(&buf, "auto", slog.LevelInfo).Info("to a buffer", "k", "v")
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{string(b), buf.String()} {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["k"] != "v" {
			t.Errorf("auto, not a terminal: %q, want a JSON line (%v)", line, err)
		}
	}
	buf.Reset()
	NewLogger(&buf, "text", slog.LevelInfo).Info("hello", "k", "v")
	if s := buf.String(); !strings.Contains(s, `msg=hello k=v`) {
		t.Errorf("text: %q", s)
	}
}
