package config

import (
	"fmt"
	"log/slog"
)

const redacted = "[REDACTED]"

// Secret holds a secret setting. Every way of printing it (fmt, slog, JSON,
// the flag's default) shows a placeholder; only Value returns the secret.
type Secret struct {
	value string
	set   bool
}

// NewSecret returns a Secret holding v, for tests and embedded defaults.
func NewSecret(v string) Secret { return Secret{value: v, set: v != ""} }

// Value returns the secret itself.
func (s Secret) Value() string { return s.value }

// IsSet reports whether a value was given.
func (s Secret) IsSet() bool { return s.value != "" }

// String implements flag.Value and fmt.Stringer without the secret.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return redacted
}

// Set implements flag.Value.
func (s *Secret) Set(v string) error { s.value, s.set = v, true; return nil }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps the secret out of JSON and text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// GoString keeps the secret out of %#v.
func (s Secret) GoString() string { return redacted }

// Format keeps the secret out of every fmt verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }
