// Package benchutil measures what the benchmarks report besides time:
// the CPU the benchmark process used and the whole machine's busy cores,
// from /proc, so that contention from other processes shows in the figures.
// It is used by benchmarks only.
package benchutil

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

// CPUSample is CPU time from /proc, in clock ticks (USER_HZ, 100/s on Linux).
type CPUSample struct {
	ok   bool
	self int64 // this process: utime + stime
	busy int64 // the machine: every CPU, idle and iowait excluded
}

const userHZ = 100

// ReadCPU samples /proc/self/stat and /proc/stat; ok is false where they
// cannot be read or parsed (not Linux).
func ReadCPU() CPUSample {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return CPUSample{}
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime field 14, stime field 15.
	_, rest, ok := bytes.Cut(stat, []byte(") "))
	f := strings.Fields(string(rest))
	if !ok || len(f) < 13 {
		return CPUSample{}
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	all, err3 := os.ReadFile("/proc/stat")
	if err1 != nil || err2 != nil || err3 != nil {
		return CPUSample{}
	}
	line, _, _ := bytes.Cut(all, []byte("\n"))
	cf := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal …
	if len(cf) < 9 || cf[0] != "cpu" {
		return CPUSample{}
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(cf[i+1], 10, 64)
		if err != nil {
			return CPUSample{}
		}
		v[i] = n
	}
	return CPUSample{
		ok:   true,
		self: utime + stime,
		busy: v[0] + v[1] + v[2] + v[5] + v[6] + v[7],
	}
}

// ReportCPU reports the CPU metrics of a run that lasted at least a second
// (the ticks are 10 ms: shorter runs would report noise).
func ReportCPU(b *testing.B, from, to CPUSample) {
	el := b.Elapsed().Seconds()
	if !from.ok || !to.ok || el < 1 || b.N == 0 {
		return
	}
	self := float64(to.self-from.self) / userHZ // seconds
	b.ReportMetric(self*1e6/float64(b.N), "cpu-us/publish")
	b.ReportMetric(self/el, "cpu-cores")
	b.ReportMetric(float64(to.busy-from.busy)/userHZ/el, "busy-cores")
}
