package config

import (
	"fmt"
	"strings"
	"testing"
)

// The bounds on what a worker holds: their defaults, and a bad value is a
// line naming its flag and variable.
func TestWorkerHoldingBounds(t *testing.T) {
	_, w, err := parseKafkaWorker(t)
	if err != nil {
		t.Fatal(err)
	}
	if w.MaxInFlightBytes != 16<<20 || w.MaxUncommittedPerPartition != 4096 || LaneShare(w.MaxInFlight) != 64 {
		t.Fatalf("defaults: max-in-flight-bytes %d, max-uncommitted-per-partition %d, lane share %d",
			w.MaxInFlightBytes, w.MaxUncommittedPerPartition, LaneShare(w.MaxInFlight))
	}
	for _, n := range []int{1, 2, 3, 4, 7} {
		if got := LaneShare(n); got < 1 || got > n {
			t.Errorf("LaneShare(%d) = %d", n, got)
		}
	}
	for _, tc := range []struct {
		flag, value string
	}{
		{"max-in-flight-bytes", "0"},
		{"max-in-flight-bytes", "65536"},
		{"max-in-flight-bytes", "2000000000000"},
		{"max-uncommitted-per-partition", "0"},
		{"max-uncommitted-per-partition", "-5"},
	} {
		_, _, err := parseKafkaWorker(t, "--"+tc.flag, tc.value)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--%s (%s): ", tc.flag, EnvVar(tc.flag))) {
			t.Errorf("--%s %s: %v, want a line naming the setting", tc.flag, tc.value, err)
		}
	}
}
