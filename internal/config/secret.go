package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
)

const redacted = "[REDACTED]"

// Secret holds a secret setting. Every way of printing it (fmt, slog, JSON,
// the flag's default) shows a placeholder; only Value returns the secret.
//
// A secret read from a file (--NAME-file, CXBRIDGE_NAME_FILE) can be read
// again with Reload: the copies of a Secret share its value, so every
// holder sees the new one.
type Secret struct{ c *secretCell }

type secretCell struct {
	v    atomic.Pointer[string]
	file string // the file it was read from, "" when given directly
}

func newCell(v, file string) *secretCell {
	c := &secretCell{file: file}
	c.v.Store(&v)
	return c
}

// NewSecret returns a Secret holding v, for tests and embedded defaults.
func NewSecret(v string) Secret { return Secret{c: newCell(v, "")} }

// Value returns the secret itself.
func (s Secret) Value() string {
	if s.c == nil {
		return ""
	}
	return *s.c.v.Load()
}

// IsSet reports whether a value was given.
func (s Secret) IsSet() bool { return s.Value() != "" }

// File is the file the secret was read from, "" when it was given directly.
func (s Secret) File() string {
	if s.c == nil {
		return ""
	}
	return s.c.file
}

// String implements flag.Value and fmt.Stringer without the secret.
func (s Secret) String() string {
	if s.Value() == "" {
		return ""
	}
	return redacted
}

// Set implements flag.Value.
func (s *Secret) Set(v string) error { s.c = newCell(v, ""); return nil }

// readSecretFile reads a secret file: its content less trailing line ends.
// Its errors name the file, never its content.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// errNoFile is Reload's error for a secret not read from a file.
var errNoFile = errors.New("not read from a file")

// Reload reads the secret's file again and, when it could, makes its
// content the value of every copy of s. It reports whether the value
// changed. On an error the value stays as it was.
func (s Secret) Reload() (changed bool, err error) {
	if s.File() == "" {
		return false, errNoFile
	}
	v, err := readSecretFile(s.c.file)
	if err != nil {
		return false, err
	}
	return *s.c.v.Swap(&v) != v, nil
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps the secret out of JSON and text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// GoString keeps the secret out of %#v.
func (s Secret) GoString() string { return redacted }

// Format keeps the secret out of every fmt verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }
