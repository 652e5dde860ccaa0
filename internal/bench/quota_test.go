package bench

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/testutil"
)

var (
	flagQuotaWorkers   = flag.Int("quota.workers", 3, "BenchmarkQuota: worker processes of the group")
	flagQuota          = flag.Float64("quota.rate", 500, "BenchmarkQuota: CXone's quota, publishes/s accepted (429 over it, Retry-After: 1)")
	flagQuotaBacklog   = flag.Duration("quota.backlog", 90*time.Second, "BenchmarkQuota: the backlog, as this long at the quota")
	flagQuotaRateLimit = flag.Float64("quota.rate-limit", 0, "BenchmarkQuota: the workers' --rate-limit (0: none, the limit is discovered from CXone's 429s)")
	flagQuotaWarmup    = flag.Duration("quota.warmup", 10*time.Second, "BenchmarkQuota: the start of the drain left out of the steady figures")
)

// BenchmarkQuota measures how much of a CXone quota a group of workers gets:
// the simulator accepts -quota.rate publishes/s and answers 429
// (Retry-After: 1) above it, a backlog well beyond the quota waits in the
// input topic, and -quota.workers worker processes of one group drain it.
// Run it with -benchtime 1x: one iteration is one full workload (fresh
// broker, simulator and group).
//
//	go test -run '^$' -bench Quota -benchtime 1x -count 5 -timeout 60m ./internal/bench/
//
// Metrics (the simulator's counts, sampled every 100 ms):
//   - goodput-%: accepted publishes/s as a share of the quota over the
//     steady part of the drain: from -quota.warmup after the first
//     acceptance (the group joins and finds the pace) until 90 % of the
//     backlog is accepted (the last partitions then run out unevenly);
//   - 429-%: the share of publish requests answered 429 over that window;
//   - total-goodput-%, total-429-%: the same over the whole drain, first
//     acceptance to the last record's.
//
// With -e2e.binary another build (say main's) is measured the same way.
func BenchmarkQuota(b *testing.B) {
	testutil.SkipShort(b, "runs the worker as a process on a backlog, for minutes")
	name := fmt.Sprintf("workers=%d/quota=%g/rate-limit=%g", *flagQuotaWorkers, *flagQuota, *flagQuotaRateLimit)
	b.Run(name, func(b *testing.B) {
		var rs []quotaResult
		for range b.N {
			b.StopTimer()
			rs = append(rs, runQuota(b))
		}
		mean := func(f func(r quotaResult) float64) float64 {
			var s float64
			for _, r := range rs {
				s += f(r)
			}
			return s / float64(len(rs))
		}
		b.ReportMetric(mean(func(r quotaResult) float64 { return r.goodput }), "goodput-%")
		b.ReportMetric(mean(func(r quotaResult) float64 { return r.share429 }), "429-%")
		b.ReportMetric(mean(func(r quotaResult) float64 { return r.totalGoodput }), "total-goodput-%")
		b.ReportMetric(mean(func(r quotaResult) float64 { return r.total429 }), "total-429-%")
		b.ReportMetric(mean(func(r quotaResult) float64 { return r.load1 }), "load1")
	})
}

type quotaResult struct {
	goodput, share429, totalGoodput, total429, load1 float64
}

// quotaSample is the simulator's counts at one moment.
type quotaSample struct {
	t                            time.Time
	accepted, distinct, req, tmr int64
}

func runQuota(b *testing.B) quotaResult {
	quota := *flagQuota
	st := newStackFaults(b, sim.Faults{RateLimit: quota, RetryAfter: "1",
		Latency: sim.Duration(5 * time.Millisecond), LatencyJitter: sim.Duration(10 * time.Millisecond)})
	defer st.close()
	n := int(quota * flagQuotaBacklog.Seconds())
	var ps produce.Stats
	if err := produce.Run(context.Background(), produce.Config{Brokers: st.broker.Addrs, Topic: st.topic, Count: n, Keys: keys, Size: dataSize, Seed: 1}, &ps, nil); err != nil {
		b.Fatal(err)
	}

	var env []string
	if *flagQuotaRateLimit > 0 {
		env = append(env, "CXBRIDGE_CXONE_RATE_LIMIT="+strconv.FormatFloat(*flagQuotaRateLimit, 'f', -1, 64))
	}
	var ws []*worker
	var addrs []string
	for range *flagQuotaWorkers {
		addr := freeAddr(b)
		addrs = append(addrs, addr)
		ws = append(ws, st.startWorker(b, addr, "key", env...))
	}

	// Sample the simulator until the whole backlog is accepted.
	var samples []quotaSample
	deadline := time.Now().Add(2*flagQuotaBacklog.Abs() + 5*time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	var limits [][]float64 // each worker's limit, once a second, where it exports one
	for i := 0; ; i++ {
		<-tick.C
		for _, w := range ws {
			select {
			case <-w.done:
				b.Fatalf("a worker exited: %v\n%s", w.cmd.ProcessState, testutil.Tail(w.stderr.String(), 4000))
			default:
			}
		}
		s := st.sim.Stats()
		samples = append(samples, quotaSample{t: time.Now(), accepted: s.Accepted, distinct: s.Distinct, req: s.Requests, tmr: s.ByStatus[http.StatusTooManyRequests]})
		if i%10 == 0 {
			limits = append(limits, scrapeLimits(addrs))
		}
		if s.Distinct >= int64(n) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d accepted after %v", s.Distinct, n, 2*flagQuotaBacklog.Abs()+5*time.Minute)
		}
	}
	tick.Stop()
	res := quotaResult{load1: load1()}
	st.waitDrained(b, ws[0], 5*time.Minute)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { w.stop(b) })
	}
	wg.Wait()

	s := st.sim.Stats()
	if s.Distinct != int64(n) || s.OrderViolations != 0 {
		b.Errorf("simulator: %+v; want %d distinct, no order violation", s, n)
	}
	first := slices.IndexFunc(samples, func(q quotaSample) bool { return q.accepted > 0 })
	last := len(samples) - 1
	at := func(pred func(q quotaSample) bool) int { return slices.IndexFunc(samples, pred) }
	from := at(func(q quotaSample) bool { return q.t.Sub(samples[first].t) >= *flagQuotaWarmup })
	to := at(func(q quotaSample) bool { return q.distinct >= int64(n)*9/10 })
	if first < 0 || from < 0 || to <= from {
		b.Fatalf("drain too short for the figures: first %d, from %d, to %d of %d samples; raise -quota.backlog", first, from, to, len(samples))
	}
	rate := func(i, j int) (goodput, share float64) {
		a, z := samples[i], samples[j]
		goodput = float64(z.accepted-a.accepted) / z.t.Sub(a.t).Seconds() / quota * 100
		if req := z.req - a.req; req > 0 {
			share = float64(z.tmr-a.tmr) / float64(req) * 100
		}
		return goodput, share
	}
	res.goodput, res.share429 = rate(from, to)
	res.totalGoodput, res.total429 = rate(first, last)
	// Each 10 s of the steady window, to show how even it is.
	var per []string
	for i := from; i+100 <= to; i += 100 {
		g, sh := rate(i, i+100)
		per = append(per, fmt.Sprintf("%.0f%%/%.1f%%", g, sh))
	}
	b.Logf("%d records, %d workers, quota %g/s: steady (%v–%v after the first acceptance) goodput %.1f %%, 429 %.2f %%; whole drain (%v) goodput %.1f %%, 429 %.2f %%; load %.2f",
		n, len(ws), quota, samples[from].t.Sub(samples[first].t).Round(100*time.Millisecond), samples[to].t.Sub(samples[first].t).Round(100*time.Millisecond),
		res.goodput, res.share429, samples[last].t.Sub(samples[first].t).Round(100*time.Millisecond), res.totalGoodput, res.total429, res.load1)
	b.Logf("per 10 s of the steady window (goodput/429): %s", strings.Join(per, " "))
	b.Logf("simulator: %+v", s)
	if len(limits) > 0 && len(limits[len(limits)-1]) > 0 {
		var ls []string
		for i, l := range limits {
			if i%5 == 0 {
				ls = append(ls, fmt.Sprint(l))
			}
		}
		b.Logf("the workers' rate limits every 5 s: %s", strings.Join(ls, " "))
	}
	return res
}

// scrapeLimits reads cxbridge_rate_limit_per_second from each worker's
// metrics, rounded; a worker that does not export it (an older build) is
// left out.
func scrapeLimits(addrs []string) []float64 {
	var out []float64
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "cxbridge_rate_limit_per_second "); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					out = append(out, float64(int(f+0.5)))
				}
			}
		}
		resp.Body.Close()
	}
	return out
}
