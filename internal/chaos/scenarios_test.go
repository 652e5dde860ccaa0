package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
)

// Scenario is one kind of fault, injected while the records flow.
type Scenario struct {
	Name  string
	Fault string // what is done, for the report
	// Workers started before the producer (w0, w1, …). Default 1.
	Workers int
	// InvalidRatio is the share of bad records. Default 0.01.
	InvalidRatio float64
	// Proxy puts the harness's TCP proxy between the workers and CXone.
	Proxy bool
	// Faults are the simulator's faults for the whole run.
	Faults func(Size) sim.Faults
	// Rate is the producer's pace, records per second. Default Size.Rate.
	Rate func(Size) float64
	// Inject runs while the producer writes; it injects the faults and
	// records them with h.recordFault.
	Inject func(ctx context.Context, h *Harness) error
	// Took says whether the fault took effect (a fault that never bit
	// proves nothing); nil when there is nothing to check.
	Took func(r Result) error
}

// answered checks that CXone answered status at least once.
func answered(status int) func(Result) error {
	return func(r Result) error {
		if r.Status[status] == 0 {
			return fmt.Errorf("CXone never answered %d: the fault did not bite", status)
		}
		return nil
	}
}

// KillBound is the longest a kill -9 of a worker, started again a second
// later, may stop the group publishing at the shipped settings: the
// coordinator waits for the dead member until its session (6 s) expires.
const KillBound = 10 * time.Second

// killScenario kills one of workers workers Size.Kills times, in turn,
// starting it again a second later, each time once the group has
// recovered from the kill before; records keep coming (Size.KillRate)
// throughout. Each kill must stop the group publishing for at most
// KillBound.
func killScenario(workers int) Scenario {
	name := "kill-9"
	if workers != 2 {
		name = fmt.Sprintf("kill-9-%dw", workers)
	}
	return Scenario{
		Name:    name,
		Fault:   fmt.Sprintf("SIGKILL of one of %d workers, restarted 1 s later, repeatedly", workers),
		Workers: workers,
		Rate:    func(s Size) float64 { return s.KillRate },
		Inject: func(ctx context.Context, h *Harness) error {
			n := h.Size.Kills
			for i := range n {
				if err := h.Progress(ctx, 0.1+0.7*float64(i)/float64(max(n-1, 1))); err != nil {
					return err
				}
				if err := h.KillAndRestart(ctx, fmt.Sprintf("w%d", i%workers), time.Second); err != nil {
					return err
				}
			}
			return nil
		},
		Took: func(r Result) error {
			if len(r.Kills) != r.size.Kills {
				return fmt.Errorf("%d kills recovered from, want %d", len(r.Kills), r.size.Kills)
			}
			var errs []error
			for _, k := range r.Kills {
				if k.Frozen > KillBound {
					errs = append(errs, fmt.Errorf("%s at %s stopped the group publishing for %v, more than %v",
						k.Name, k.At.Format("15:04:05.000"), k.Frozen.Round(100*time.Millisecond), KillBound))
				}
			}
			return errors.Join(errs...)
		},
	}
}

// JoinKillHeal is the longest the kill-9-join scenario waits, from the
// second kill on, for the group to be whole again: every living worker a
// member, every partition held by one of them. A broker that never
// expires the member killed in its join (the embedded one, at random)
// leaves its partitions to nobody until a worker notices — 88 s after the
// rebalance at the shipped settings, see bridge.unservedBound — and
// rejoins, and the rebalance that starts waits up to the rebalance timeout
// (6 s) for the dead member before dropping it.
const JoinKillHeal = 150 * time.Second

// joinKillScenario kills one of two workers (SIGKILL), starts it again a
// second later, kills the restarted process while the coordinator holds
// its join pending, and starts it once more: the dead member's join
// completes a generation that gives it partitions, and the group must
// still end with every partition held by a living worker (within
// JoinKillHeal) and every record published and committed.
func joinKillScenario() Scenario {
	return Scenario{
		Name:    "kill-9-join",
		Fault:   "SIGKILL of one of 2 workers, restarted 1 s later, killed again while its join is pending, restarted",
		Workers: 2,
		Rate:    func(s Size) float64 { return s.KillRate },
		Inject: func(ctx context.Context, h *Harness) error {
			if err := h.Progress(ctx, 0.15); err != nil {
				return err
			}
			return h.KillDuringJoin(ctx, "w1", time.Second, JoinKillHeal)
		},
		Took: func(r Result) error {
			if len(r.Kills) != 1 {
				return fmt.Errorf("%d recoveries from the kill during a join, want 1", len(r.Kills))
			}
			return nil
		},
	}
}

// Scenarios are the suite, in the order it runs them.
var Scenarios = []Scenario{
	{
		Name: "baseline", Fault: "none (1 % bad records)",
	},
	killScenario(2),
	killScenario(3),
	joinKillScenario(),
	{
		Name: "outage", Fault: "CXone answers 503 to everything",
		Inject: func(ctx context.Context, h *Harness) error {
			if err := h.Progress(ctx, 0.3); err != nil {
				return err
			}
			f := h.baseFaults
			f.OutageFor = sim.Duration(h.Size.Outage)
			t0 := time.Now()
			if err := h.setFaults(f); err != nil {
				return err
			}
			h.recordFault(Fault{Name: "outage", Start: t0, End: t0.Add(h.Size.Outage)})
			return sleep(ctx, h.Size.Outage)
		},
		Took: answered(503),
	},
	{
		Name: "429-storm", Fault: "CXone rate limit far below the offered rate, Retry-After: 1",
		Inject: func(ctx context.Context, h *Harness) error {
			if err := h.Progress(ctx, 0.3); err != nil {
				return err
			}
			f := h.baseFaults
			f.RateLimit, f.RetryAfter = h.Size.StormLimit, "1"
			t0 := time.Now()
			if err := h.setFaults(f); err != nil {
				return err
			}
			if err := sleep(ctx, h.Size.Storm); err != nil {
				return err
			}
			if err := h.setFaults(h.baseFaults); err != nil {
				return err
			}
			h.recordFault(Fault{Name: "429 storm", Start: t0, End: time.Now()})
			return nil
		},
		Took: answered(429),
	},
	{
		Name: "token-expiry", Fault: "every token refused (401) once it is a few seconds old",
		Faults: func(s Size) sim.Faults { return sim.Faults{TokenExpiry: sim.Duration(s.TokenExpiry)} },
		Took: func(r Result) error {
			if r.TokenRequests < 2 {
				return fmt.Errorf("%d token requests: no token expired", r.TokenRequests)
			}
			return nil
		},
	},
	{
		Name: "bad-records", Fault: "1 % bad records of each of the 12 kinds (12 % bad)", InvalidRatio: 0.01 * float64(len(produce.Bad)),
	},
	{
		Name: "scale-1-3-1", Fault: "1 worker, 2 more join, then leave (SIGTERM)",
		Inject: func(ctx context.Context, h *Harness) error {
			if err := h.Progress(ctx, 0.25); err != nil {
				return err
			}
			t0 := time.Now()
			for _, n := range []string{"w1", "w2"} {
				if err := h.StartWorker(n); err != nil {
					return err
				}
			}
			h.recordFault(Fault{Name: "scale 1→3", Start: t0, End: time.Now()})
			if err := h.Progress(ctx, 0.6); err != nil {
				return err
			}
			t0 = time.Now()
			for _, n := range []string{"w1", "w2"} {
				if err := h.StopWorker(n); err != nil {
					return err
				}
			}
			h.recordFault(Fault{Name: "scale 3→1", Start: t0, End: time.Now()})
			return nil
		},
	},
	{
		Name: "broker-restart", Fault: "the broker killed (SIGKILL) and started again on its data",
		Inject: func(ctx context.Context, h *Harness) error {
			if err := h.Progress(ctx, 0.35); err != nil {
				return err
			}
			return h.KillBroker(ctx, h.Size.BrokerDown)
		},
	},
	{
		Name: "conn-resets", Fault: "a TCP proxy resets every worker↔CXone connection periodically", Proxy: true,
		Inject: func(ctx context.Context, h *Harness) error {
			if err := h.Progress(ctx, 0.1); err != nil {
				return err
			}
			t0 := time.Now()
			done := make(chan error, 1)
			go func() { done <- h.Progress(ctx, 0.9) }()
			t := time.NewTicker(h.Size.ResetEvery)
			defer t.Stop()
			for {
				select {
				case err := <-done:
					h.recordFault(Fault{Name: "connection resets", Start: t0, End: time.Now()})
					return err
				case <-t.C:
					h.proxy.ResetAll()
				}
			}
		},
		Took: func(r Result) error {
			if r.Resets == 0 {
				return errors.New("no connection was reset")
			}
			return nil
		},
	},
}
