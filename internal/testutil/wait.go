package testutil

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// PollEvery is how often WaitFor checks its condition.
const PollEvery = 20 * time.Millisecond

// WaitFor waits until cond holds, checking it every PollEvery; if it does
// not hold within timeout, t fails with what it waited for and what each
// state function says then.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool, state ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			var detail string
			for _, f := range state {
				detail += "; " + f()
			}
			t.Fatalf("timed out after %v waiting for: %s%s", timeout, what, detail)
		}
		time.Sleep(PollEvery)
	}
}

// SkipShort skips t under -short (go test -short, make test-short): it is
// one of the slow tests — processes, a broker, seconds to minutes — that
// the full suite (make test) runs; why says what makes it slow.
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: " + why)
	}
}

// SyncBuffer is a log sink for concurrent writers (a process's stderr, a
// logger's goroutines), read while they write.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Count is how many times sub occurs in what was written so far.
func (s *SyncBuffer) Count(sub string) int {
	return strings.Count(s.String(), sub)
}

// Tail is the last n bytes of s, marked when cut.
func Tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
