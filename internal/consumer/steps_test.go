package consumer

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxbridge/cxbridge/internal/dispatch"
	"github.com/cxbridge/cxbridge/internal/testkafka"
	"github.com/segmentio/kafka-go"
)

// A partition with nothing to fetch keeps making steps (each long poll
// that answers empty is one), so that liveness can tell an idle partition
// from a wedged one; a fetch hook that blocks stops them.
func TestFetchLoopSteps(t *testing.T) {
	b := testkafka.Start(t, testkafka.Config{Partitions: 2, Topics: []string{"idle"}})
	var blockP1 atomic.Bool
	blockP1.Store(true)
	c, err := New(Config{Brokers: b.Addrs, Topic: b.Topic("idle"), GroupID: "unused",
		Hooks: Hooks{Fetch: func(ctx context.Context, _ string, partition int) {
			if partition == 1 && blockP1.Load() {
				<-ctx.Done()
			}
		}}},
		dispatch.New(dispatch.ModeKey, 10), func(context.Context, kafka.Message, time.Time) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer c.transport.CloseIdleConnections()
	if bound := c.StepBound(); bound != 500*time.Millisecond+fetchTimeout+fetchRetryMax {
		t.Fatalf("StepBound at the defaults = %v", bound)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	g := newTestGen(t, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.runGeneration(ctx, g.generationOf(map[string]map[int]int64{b.Topic("idle"): {0: 0, 1: 0}}))
	}()
	since := func(p int) time.Duration {
		for _, ps := range c.Status().Partitions {
			if ps.Partition == p {
				return ps.SinceStep
			}
		}
		t.Fatalf("partition %d not in the status", p)
		return 0
	}
	// A window of time, not a synchronisation: 3 s of long polls of 500 ms.
	time.Sleep(3 * time.Second)
	if d := since(0); d <= 0 || d > 1500*time.Millisecond {
		t.Fatalf("the idle partition's last step was %v ago: want within three long polls", d)
	}
	if d := since(1); d < 2500*time.Millisecond {
		t.Fatalf("the blocked partition's last step was %v ago: want since its start, ~3 s", d)
	}
	g.end()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("runGeneration did not return within 30s of the generation's end")
	}
	g.wg.Wait()
}
