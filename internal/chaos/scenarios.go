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

// Scenarios are the suite, in the order it runs them.
var Scenarios = []Scenario{
	{
		Name: "baseline", Fault: "none (1 % bad records)",
	},
	{
		Name: "kill-9", Fault: "SIGKILL of a worker 5 times, restarted at once (2 workers)", Workers: 2,
		Took: func(r Result) error {
			if len(r.Faults) != 5 {
				return fmt.Errorf("%d kills, want 5", len(r.Faults))
			}
			return nil
		},
		Inject: func(ctx context.Context, h *Harness) error {
			for i, at := range []float64{0.12, 0.28, 0.44, 0.60, 0.76} {
				if err := h.Progress(ctx, at); err != nil {
					return err
				}
				name := fmt.Sprintf("w%d", i%2)
				t0 := time.Now()
				h.KillWorker(name)
				if err := h.StartWorker(name); err != nil {
					return err
				}
				h.recordFault("kill -9 "+name, t0, time.Now())
			}
			return nil
		},
	},
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
			h.recordFault("outage", t0, t0.Add(h.Size.Outage))
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
			h.recordFault("429 storm", t0, time.Now())
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
			h.recordFault("scale 1→3", t0, time.Now())
			if err := h.Progress(ctx, 0.6); err != nil {
				return err
			}
			t0 = time.Now()
			for _, n := range []string{"w1", "w2"} {
				if err := h.StopWorker(n); err != nil {
					return err
				}
			}
			h.recordFault("scale 3→1", t0, time.Now())
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
					h.recordFault("connection resets", t0, time.Now())
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
