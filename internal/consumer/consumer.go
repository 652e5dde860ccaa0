// Package consumer is cxbridge's member of a Kafka consumer group: it joins
// the group with kafka-go's ConsumerGroup, subscribed to every input topic,
// runs one fetch loop per assigned partition (a partition is always a
// partition of one topic: TopicPartition), hands every record to a dispatch.Dispatcher, tracks which
// offsets are settled and commits each partition's watermark of contiguous
// settled offsets — periodically, at revocation and at shutdown — always
// with the generation that fetched the records (design invariants 1, 2, 4).
//
// It does not decode, publish or dead-letter: the Processor does, and
// reports whether the record is settled.
//
// Beside the member, the package holds the rest of the worker's Kafka
// side: each partition's offset tracker (tracker.go), the partition
// reader (reader.go), a group's lag as the brokers report it (lag.go), and
// the start-up check of the connection settings (probe.go, versions.go).
//
// Its unit tests (consumer_test.go) run a generation through two seams: a
// generation (start its functions, commit, leave) and a partition's
// record source (fetcher), with the real dispatcher, on synctest's clock.
//
// Lifecycle of a generation: Next → one goroutine per partition (Start),
// which first fixes where the partition starts (a partition the group never
// committed is committed at its resolved start offset, so that the next
// owner starts there too) and then fetches at read_committed isolation.
//
//   - The generation ends (a rebalance): each partition stops fetching,
//     waits for its held records within DrainTimeout (the member sends no
//     heartbeat meanwhile: kafka-go's heartbeats belong to the generation),
//     commits its watermark with the ending generation, and returns.
//   - Run's ctx ends (shutdown): each partition stops fetching, waits for
//     its held records within ShutdownTimeout — the generation goes on
//     meanwhile, so heartbeats and periodic commits go on and the member
//     keeps its partitions — commits, and then the group is closed, which
//     leaves it. Should a rebalance end the generation during that drain,
//     what is left of the budget is capped at DrainTimeout.
//
// Lock order: a generation's commitMu, then a tracker's own lock (held
// only inside its methods).
package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/dispatch"
	"github.com/cxbridge/cxbridge/internal/retry"
)

// Processor settles one record, fetched at fetched (time queued behind its
// key or for a slot is counted from there): it returns true once the record
// is accepted by CXone or durably dead-lettered, false when ctx ended first
// (the record then stays unsettled and is fetched again by whoever owns the
// partition next). It must not panic.
type Processor func(ctx context.Context, msg kafka.Message, fetched time.Time) (settled bool)

// Config configures a Consumer. Zero durations take the defaults.
type Config struct {
	Brokers []string // Required.
	// Topics are the topics the group reads; Topic is the one topic when
	// Topics is empty. One of them is required. A partition is a partition
	// of one topic everywhere: its tracker, commits, status and lag.
	Topics  []string
	Topic   string
	GroupID string // Required.
	// Dialer carries client id, TLS and SASL. Optional.
	Dialer *kafka.Dialer
	// StartOffset is where a partition without a committed offset starts:
	// kafka.FirstOffset (default) or kafka.LastOffset. It is resolved when
	// the partition is assigned and committed at once.
	StartOffset int64
	// SessionTimeout, RebalanceTimeout, HeartbeatInterval and JoinBackoff
	// are the group's timings: defaults 6s, 6s, 1s and 1s, the reasons in
	// config.Kafka's defaults.
	SessionTimeout, RebalanceTimeout, HeartbeatInterval, JoinBackoff time.Duration
	// CoordinatorTimeout bounds each request to the group coordinator
	// (heartbeat, commit, offset fetch, leave); a join may take it plus
	// RebalanceTimeout, a sync it plus SessionTimeout. Default 3s: a
	// heartbeat that hangs is given up, and the member rejoins, before its
	// session (6s, heartbeats every 1s) runs out.
	CoordinatorTimeout time.Duration
	// PartitionWatchInterval is how often new partitions are looked for. Default 5s.
	PartitionWatchInterval time.Duration
	// FetchMaxBytes bounds one fetch response; a record batch larger than
	// that still comes whole (KIP-74). A partition's reader holds one
	// response at a time, outside the dispatcher's --max-in-flight, so it
	// is kept small. Default 256 KiB: end to end (100,000 records, 6
	// partitions) peak RSS was 43 MB with it, 70 MB with 2 MiB fetches, 38
	// MB with kafka-go's Reader, which left the response in the socket.
	FetchMaxBytes int
	// FetchMaxWait is the longest a fetch waits for data. Default 500ms.
	FetchMaxWait time.Duration
	// MaxUncommitted bounds the records one partition holds from its oldest
	// unsettled record on (its tracker's Len): its fetching waits while
	// the bound is reached, the other partitions go on. 0 = no bound.
	MaxUncommitted int
	// CommitInterval and CommitEvery: commit at least this often, and
	// after this many settled records. Defaults 1s and 1000.
	CommitInterval time.Duration
	CommitEvery    int
	// DrainTimeout bounds the wait for running records of a revoked
	// partition; ShutdownTimeout the same at shutdown. Defaults 3s and 30s.
	DrainTimeout, ShutdownTimeout time.Duration
	// Hooks observe the consumer, for metrics and readiness. Optional.
	Hooks Hooks
	// Logger is optional.
	Logger *slog.Logger
}

// Hooks are optional observers; nil fields are skipped.
type Hooks struct {
	Commit   func(topic string, partition int, offset int64, err error)
	Assigned func(generation int32, partitions []TopicPartition)
	// Fetch is called before each fetch request of a partition's reader.
	// It may block until ctx ends: fault-injection tests use it to wedge
	// one partition's fetch loop.
	Fetch func(ctx context.Context, topic string, partition int)
}

// TopicPartition names a partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

// compareTP orders by topic, then partition.
func compareTP(a, b TopicPartition) int {
	return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
}

func (c *Config) setDefaults() {
	if c.StartOffset == 0 {
		c.StartOffset = kafka.FirstOffset
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	// A zero setting takes the shipped default (config's, the flags'); the
	// consumer's own timings (join backoff, coordinator timeout, partition
	// watch) have no flag.
	k, w := config.DefaultKafka(), config.DefaultWorker()
	def(&c.SessionTimeout, k.SessionTimeout)
	def(&c.RebalanceTimeout, k.RebalanceTimeout)
	def(&c.HeartbeatInterval, k.HeartbeatInterval)
	def(&c.JoinBackoff, time.Second)
	def(&c.CoordinatorTimeout, 3*time.Second)
	def(&c.PartitionWatchInterval, 5*time.Second)
	def(&c.FetchMaxWait, k.FetchMaxWait)
	def(&c.CommitInterval, w.CommitInterval)
	def(&c.DrainTimeout, w.DrainTimeout)
	def(&c.ShutdownTimeout, w.ShutdownTimeout)
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = k.FetchMaxBytes
	}
	if c.CommitEvery <= 0 {
		c.CommitEvery = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Consumer is one member of the group.
type Consumer struct {
	cfg     Config
	disp    *dispatch.Dispatcher
	process Processor
	log     *slog.Logger

	transport *kafka.Transport // the partition readers' and client's
	client    *kafka.Client    // start offsets

	settled  atomic.Int64  // records settled since the last commit round
	commitCh chan struct{} // pokes the committer after CommitEvery settles
	closing  atomic.Bool   // Run is closing the group (kafka-go leaves it)
	// missing: the input topics the broker says do not exist (awaitTopics);
	// nil when none.
	missing atomic.Pointer[[]string]
	// rejoining: the member is leaving the group to join it again (Rejoin);
	// its partitions drain within DrainTimeout, not ShutdownTimeout.
	rejoining atomic.Bool

	// newFetcher makes a partition's record source: a reader of the
	// brokers (readerFor), a test's own log in unit tests.
	newFetcher func(p *partition) fetcher

	mu         sync.Mutex
	partitions map[TopicPartition]*partition // of the current generation
	genID      int32
	joined     bool
	leave      func() bool // ends the current membership unless it is ending (Rejoin); nil outside Run
}

// generation is what the consumer uses of one generation of the group: a
// kafka.Generation in production (member), a test's own in unit tests.
type generation struct {
	id       int32
	member   string
	assigned map[string][]kafka.PartitionAssignment // by topic
	// start runs fn on a goroutine of the generation: fn's ctx ends when
	// the generation ends, and the generation ends as soon as any fn
	// returns (kafka.Generation.Start).
	start func(fn func(ctx context.Context))
	// commit commits offsets with this generation.
	commit func(offsets map[string]map[int]int64) error
	// leave sends LeaveGroup for the generation's member.
	leave func(ctx context.Context) error
}

// fetcher is one partition's source of records (reader).
type fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
}

// partition is one assigned partition of one generation.
type partition struct {
	topic     string
	id        int
	start     int64 // the assignment's offset; negative = none committed yet
	tracker   atomic.Pointer[tracker]
	committed int64 // the last offset this generation committed; under commitMu
	// stepAt is when the partition's fetch loop last made a step (unix
	// nanos): it started, a fetch answered or failed, a start-offset lookup
	// answered or failed. See StepBound.
	stepAt atomic.Int64
}

func (p *partition) step() { p.stepAt.Store(time.Now().UnixNano()) }

// New returns a consumer that hands records to process through disp.
func New(cfg Config, disp *dispatch.Dispatcher, process Processor) (*Consumer, error) {
	cfg.setDefaults()
	if len(cfg.Topics) == 0 && cfg.Topic != "" {
		cfg.Topics = []string{cfg.Topic}
	}
	if len(cfg.Brokers) == 0 || len(cfg.Topics) == 0 || slices.Contains(cfg.Topics, "") || cfg.GroupID == "" {
		return nil, errors.New("consumer: brokers, topic and group id are required")
	}
	if cfg.StartOffset != kafka.FirstOffset && cfg.StartOffset != kafka.LastOffset {
		return nil, fmt.Errorf("consumer: start offset %d: want kafka.FirstOffset or kafka.LastOffset", cfg.StartOffset)
	}
	d := cfg.Dialer
	if d == nil {
		d = kafka.DefaultDialer
	}
	tr := &kafka.Transport{ClientID: d.ClientID, TLS: d.TLS, SASL: d.SASLMechanism, DialTimeout: d.Timeout}
	c := &Consumer{
		cfg: cfg, disp: disp, process: process, log: cfg.Logger,
		transport:  tr,
		client:     &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: cfg.CoordinatorTimeout},
		commitCh:   make(chan struct{}, 1),
		partitions: map[TopicPartition]*partition{},
	}
	c.newFetcher = c.readerFor
	return c, nil
}

// LeaveTimeout bounds closing the group at shutdown, after the drain and
// the final commits: kafka-go finishes a join or sync in progress, then
// leaves (a connection and two requests to the coordinator). A deployment
// gives the worker at least --shutdown-timeout plus this before SIGKILL.
const LeaveTimeout = 10 * time.Second

// Run is a member of the group until ctx ends, then drains within
// ShutdownTimeout while still a member, commits, leaves the group and
// returns nil. Join errors (an unreachable broker) are logged and retried,
// not returned. Rejoin makes it leave the same way (draining within
// DrainTimeout) and join again as a new member.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.transport.CloseIdleConnections()
	for {
		mctx, leave := context.WithCancel(ctx)
		c.mu.Lock()
		c.leave = func() bool {
			if mctx.Err() != nil {
				return false // shutting down, or leaving already
			}
			leave()
			return true
		}
		c.mu.Unlock()
		err := c.member(mctx)
		leave()
		c.mu.Lock()
		c.leave = nil
		c.partitions, c.joined = map[TopicPartition]*partition{}, false
		c.mu.Unlock()
		c.rejoining.Store(false)
		if err != nil || ctx.Err() != nil {
			return err
		}
		c.log.Info("left the group to rejoin it; joining again", "group", c.cfg.GroupID)
	}
}

// Rejoin makes the member leave the group and join it again as a new
// member, the way it leaves at shutdown: its partitions stop fetching,
// drain within DrainTimeout while the generation goes on, commit, and the
// group is closed (kafka-go sends LeaveGroup); then Run joins afresh. The
// coordinator rebalances at the leave and at the join, and a rebalance
// drops every member that does not join it — a dead member that kept its
// partitions included. It reports false when Run is not running or a
// rejoin is already under way.
func (c *Consumer) Rejoin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leave == nil || !c.rejoining.CompareAndSwap(false, true) {
		return false
	}
	if !c.leave() {
		c.rejoining.Store(false)
		return false
	}
	return true
}

// member is one membership of the group, from the join until ctx ends and
// the group is left.
func (c *Consumer) member(ctx context.Context) error {
	c.closing.Store(false)
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                     c.cfg.GroupID,
		Brokers:                c.cfg.Brokers,
		Dialer:                 c.cfg.Dialer,
		Topics:                 c.cfg.Topics,
		HeartbeatInterval:      c.cfg.HeartbeatInterval,
		SessionTimeout:         c.cfg.SessionTimeout,
		RebalanceTimeout:       c.cfg.RebalanceTimeout,
		JoinGroupBackoff:       c.cfg.JoinBackoff,
		PartitionWatchInterval: c.cfg.PartitionWatchInterval,
		WatchPartitionChanges:  true,
		StartOffset:            c.cfg.StartOffset,
		Timeout:                c.cfg.CoordinatorTimeout,
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	// The topics are checked before the first join, and again after a
	// generation that ended within a second: how kafka-go answers a topic
	// that is missing (see awaitTopics). Other generations need no check.
	check := true
	for ctx.Err() == nil {
		if check && c.awaitTopics(ctx) != nil {
			break
		}
		check = false
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, kafka.RebalanceInProgress) { // kafka-go rejoins at once, keeping its member id
				c.log.Info("the group is rebalancing; rejoining", "group", c.cfg.GroupID)
				continue
			}
			c.log.Warn("joining the consumer group failed; retrying", "group", c.cfg.GroupID, "brokers", c.cfg.Brokers, "error", err.Error())
			continue // kafka-go backs off (JoinBackoff) before the next attempt
		}
		started := time.Now()
		c.runGeneration(ctx, c.generationOf(gen))
		check = time.Since(started) < time.Second
	}
	// Leave: closing the group ends the generation (whose partitions have
	// drained and committed), and kafka-go sends LeaveGroup, so that the
	// others take the partitions over at once rather than after a session
	// timeout. Close can hang on an unreachable broker: bound it.
	c.closing.Store(true)
	closed := make(chan struct{})
	go func() { _ = group.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(LeaveTimeout):
		c.log.Error("leaving the consumer group timed out", "timeout", LeaveTimeout.String())
	}
	return nil
}

// generationOf is what the consumer uses of gen.
func (c *Consumer) generationOf(gen *kafka.Generation) *generation {
	return &generation{
		id: gen.ID, member: gen.MemberID, assigned: gen.Assignments,
		start: gen.Start, commit: gen.CommitOffsets,
		leave: func(ctx context.Context) error {
			res, err := c.client.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: c.cfg.GroupID, Members: []kafka.LeaveGroupRequestMember{{ID: gen.MemberID}}})
			if err == nil {
				err = res.Error
				for _, m := range res.Members {
					err = cmp.Or(err, m.Error)
				}
			}
			return err
		},
	}
}

// runGeneration runs one generation until it ends, or until ctx has ended
// and every partition has drained and made its final commit; the
// generation then still runs (heartbeats, commits) until Run closes the
// group.
func (c *Consumer) runGeneration(ctx context.Context, gen *generation) {
	parts := map[TopicPartition]*partition{}
	var tps []TopicPartition
	for _, topic := range c.cfg.Topics {
		for _, a := range gen.assigned[topic] {
			tp := TopicPartition{topic, a.ID}
			parts[tp] = &partition{topic: topic, id: a.ID, start: a.Offset, committed: -1}
			tps = append(tps, tp)
		}
	}
	slices.SortFunc(tps, compareTP)
	ids := c.describe(tps)
	c.mu.Lock()
	c.partitions, c.genID, c.joined = parts, gen.id, true
	c.mu.Unlock()
	c.log.Info("partitions assigned", "generation", gen.id, "member", gen.member, "partitions", ids)
	if h := c.cfg.Hooks.Assigned; h != nil {
		h(gen.id, tps)
	}

	var commitMu sync.Mutex // serialises this generation's commits: never out of order
	var wg, drained sync.WaitGroup
	ended := make(chan struct{})
	allDrained := make(chan struct{})
	drained.Add(len(parts))
	go func() { drained.Wait(); close(allDrained) }()
	for _, p := range parts {
		wg.Add(1)
		gen.start(func(gctx context.Context) {
			defer wg.Done()
			c.runPartition(ctx, gctx, gen, p, &commitMu, drained.Done)
		})
	}
	wg.Add(1)
	gen.start(func(gctx context.Context) {
		defer wg.Done()
		c.leaveAfterDrain(ctx, gctx, gen, allDrained)
	})
	gen.start(func(gctx context.Context) {
		defer close(ended)
		c.commitLoop(gctx, gen, parts, &commitMu)
	})
	select {
	case <-ended:
	case <-ctx.Done():
		select {
		case <-ended:
		case <-allDrained: // shutdown: the generation lives on until Run closes the group
			msg := "partitions drained for shutdown; leaving the group"
			if c.rejoining.Load() {
				msg = "partitions drained; leaving the group to join it again"
			}
			c.log.Info(msg, "generation", gen.id, "partitions", ids)
			return
		}
	}
	wg.Wait()
	c.mu.Lock()
	c.joined = false
	c.mu.Unlock()
	c.log.Info("partitions revoked", "generation", gen.id, "partitions", ids)
}

// describe is what the logs say of a list of partitions: their numbers
// with one topic, topic/partition with several.
func (c *Consumer) describe(tps []TopicPartition) any {
	if len(c.cfg.Topics) == 1 {
		ids := make([]int, len(tps))
		for i, tp := range tps {
			ids[i] = tp.Partition
		}
		return ids
	}
	out := make([]string, len(tps))
	for i, tp := range tps {
		out[i] = tp.String()
	}
	return out
}

// runPartition fixes where the partition starts, fetches it until the
// generation or ctx ends, then drains and makes the partition's final
// commit, and calls drained. It returns when the generation ends:
// returning earlier would end the generation for everyone.
func (c *Consumer) runPartition(ctx, gctx context.Context, gen *generation, p *partition, commitMu *sync.Mutex, drained func()) {
	defer func() { <-gctx.Done() }()
	defer drained()
	fctx, stopFetch := context.WithCancel(gctx)
	defer stopFetch()
	stopOnShutdown := context.AfterFunc(ctx, stopFetch)
	defer stopOnShutdown()
	// work is what running records publish under: it outlives the fetch
	// so that they can finish, and ends when the drain budget is spent.
	work, endWork := context.WithCancel(context.WithoutCancel(ctx))
	defer endWork()

	p.step()
	if !c.startPartition(fctx, gen, p, commitMu) {
		return // the generation or ctx ended first: nothing fetched, nothing to commit
	}
	r := c.newFetcher(p)
	c.fetch(fctx, work, r, p)

	// Drain: every record held (running, or queued behind its key) may
	// finish within the budget, so that the watermark passes as far as it
	// can; dropping queued records would strand the settled ones after
	// them, to be published again by the next owner.
	dctx, cancel, budget := c.drainContext(ctx, gctx)
	dropped := 0
	if err := c.disp.WaitPartition(dctx, p.topic, p.id); err != nil {
		c.log.Warn("drain budget spent: interrupting the partition's records", "topic", p.topic, "partition", p.id, "budget", budget)
		endWork()
		dropped = c.disp.Drop(p.topic, p.id)
		_ = c.disp.WaitPartition(context.Background(), p.topic, p.id) // running ones return promptly once work ends
	}
	cancel()
	c.commit(gen, []*partition{p}, commitMu)
	if t := p.tracker.Load(); t != nil {
		c.log.Info("partition drained", "topic", p.topic, "partition", p.id, "committed", p.committed, "dropped", dropped, "unsettled", t.Pending())
	}
}

// readerFor makes p's reader of the brokers, from p.start.
func (c *Consumer) readerFor(p *partition) fetcher {
	return &reader{
		tr: c.transport, client: c.client, addr: kafka.TCP(c.cfg.Brokers...), topic: p.topic, partition: p.id,
		maxBytes: c.cfg.FetchMaxBytes, maxWait: c.cfg.FetchMaxWait, next: p.start, warn: c.log.Warn, onFetch: p.step, beforeFetch: c.cfg.Hooks.Fetch,
		// Offsets without a record (transaction markers, aborted
		// transactions) are settled as they are passed, so that the
		// watermark can pass them.
		skipped: func(next int64) {
			t := p.tracker.Load()
			t.Add(next-1, time.Now())
			t.Settle(next - 1)
		},
	}
}

// drainContext is the budget of a partition's drain. At a rebalance (the
// generation has ended) it is DrainTimeout: the member sends no heartbeat
// until it rejoins. At shutdown it is ShutdownTimeout, the generation (and
// its heartbeats) going on meanwhile; should the generation end during
// the drain, what is left is capped at DrainTimeout from then on.
func (c *Consumer) drainContext(ctx, gctx context.Context) (context.Context, context.CancelFunc, string) {
	if gctx.Err() != nil || ctx.Err() == nil || c.rejoining.Load() {
		dctx, cancel := context.WithTimeout(context.Background(), c.cfg.DrainTimeout)
		return dctx, cancel, c.cfg.DrainTimeout.String() + " (--drain-timeout)"
	}
	dctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
	go func() {
		select {
		case <-dctx.Done():
			return
		case <-gctx.Done():
		}
		c.log.Info("the generation ended during the shutdown drain; the rest of the drain is capped at --drain-timeout", "drain_timeout", c.cfg.DrainTimeout.String())
		t := time.NewTimer(c.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-dctx.Done():
		case <-t.C:
			cancel()
		}
	}()
	return dctx, cancel, c.cfg.ShutdownTimeout.String() + " (--shutdown-timeout, capped at --drain-timeout once the generation ended)"
}

// startPartition makes p's tracker. A partition the group has never
// committed starts at StartOffset resolved now (the log start for
// earliest, the last stable offset for latest), and that offset is
// committed at once with the generation: otherwise, while nothing was
// fetched and settled, nothing would be committed, and the next owner
// would resolve "latest" again, later, and skip what came in between.
// It returns false when ctx (the fetch's) ended before the offset was
// known.
func (c *Consumer) startPartition(ctx context.Context, gen *generation, p *partition, commitMu *sync.Mutex) bool {
	if p.start >= 0 {
		p.tracker.Store(newTracker(p.start))
		return true
	}
	err := retry.Do(ctx, retry.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second,
		OnRetry: func(_ int, err error, _ time.Duration) {
			c.log.Warn("resolving the start offset of a partition the group never committed failed; retrying", "topic", p.topic, "partition", p.id, "error", err.Error())
		}}, func(int) error {
		off, err := c.resolveStart(ctx, p.topic, p.id)
		p.step()
		switch {
		case err == nil:
			p.start = off
		case ctx.Err() != nil:
			return retry.Permanent(err)
		}
		return err
	})
	if err != nil {
		return false // only ctx ends the retries
	}
	p.tracker.Store(newTracker(p.start))
	c.commit(gen, []*partition{p}, commitMu) // a failure is retried by the commit loop
	c.log.Info("partition without a committed offset starts at its resolved start offset", "topic", p.topic, "partition", p.id, "offset", p.start,
		"start_offset", map[int64]string{kafka.FirstOffset: "earliest", kafka.LastOffset: "latest"}[c.cfg.StartOffset])
	return true
}

// resolveStart asks the partition's leader for StartOffset's absolute
// offset, at read_committed isolation (latest is then the last stable
// offset: records of transactions still open come after it).
func (c *Consumer) resolveStart(ctx context.Context, topic string, id int) (int64, error) {
	req := kafka.FirstOffsetOf(id)
	if c.cfg.StartOffset == kafka.LastOffset {
		req = kafka.LastOffsetOf(id)
	}
	res, err := c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics:         map[string][]kafka.OffsetRequest{topic: {req}},
		IsolationLevel: kafka.ReadCommitted,
	})
	if err != nil {
		return 0, err
	}
	for _, po := range res.Topics[topic] {
		if po.Partition != id {
			continue
		}
		if po.Error != nil {
			return 0, po.Error
		}
		if c.cfg.StartOffset == kafka.LastOffset {
			return po.LastOffset, nil
		}
		return po.FirstOffset, nil
	}
	return 0, fmt.Errorf("no offset of %s/%d in the answer", topic, id)
}

// fetch reads records and submits them until fctx ends.
func (c *Consumer) fetch(fctx, work context.Context, r fetcher, p *partition) {
	failures := 0
	for {
		msg, err := r.FetchMessage(fctx)
		p.step()
		if err != nil {
			if fctx.Err() != nil {
				return
			}
			failures++
			c.log.Warn("fetch failed; retrying", "topic", p.topic, "partition", p.id, "error", err.Error())
			// A stream, not one operation: retry.Do does not fit. 200ms
			// doubling up to 5s, reset by a fetched record.
			if retry.Sleep(fctx, retry.Backoff(failures, 200*time.Millisecond, fetchRetryMax)) != nil {
				return
			}
			continue
		}
		failures = 0
		t := p.tracker.Load()
		if err := c.waitRoom(fctx, t, p); err != nil {
			return // fetched, never tracked: the watermark stays below it
		}
		fetched := time.Now()
		t.Add(msg.Offset, fetched)
		job := dispatch.Job{Topic: p.topic, Partition: p.id, Offset: msg.Offset, Key: msg.Key, Bytes: recordBytes(msg), Run: func() {
			if c.process(work, msg, fetched) {
				t.Settle(msg.Offset)
				if c.settled.Add(1) >= int64(c.cfg.CommitEvery) {
					select {
					case c.commitCh <- struct{}{}:
					default:
					}
				}
			}
		}}
		if err := c.disp.Submit(fctx, job); err != nil {
			return // fetched, never started: stays unsettled, so never committed
		}
	}
}

// waitRoom waits while partition's tracker holds MaxUncommitted records:
// its oldest unsettled record holds back every one after it (a DLQ that
// refuses it for good), and fetching on would only grow what a crash or a
// rebalance fetches again.
func (c *Consumer) waitRoom(fctx context.Context, t *tracker, p *partition) error {
	limit := c.cfg.MaxUncommitted
	if limit <= 0 || t.Len() < limit {
		return nil
	}
	off, at, _ := t.Oldest()
	c.log.Warn("partition paused: too many records wait behind its oldest unsettled one",
		"topic", p.topic, "partition", p.id, "held", t.Len(), "max", limit, "oldest_offset", off, "oldest_age", time.Since(at).Round(time.Millisecond).String())
	if err := t.WaitRoom(fctx, limit); err != nil {
		return err
	}
	c.log.Info("partition resumed", "topic", p.topic, "partition", p.id)
	return nil
}

// recordBytes is what a record weighs against the dispatcher's byte budget.
func recordBytes(msg kafka.Message) int64 {
	n := len(msg.Key) + len(msg.Value)
	for _, h := range msg.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// commitLoop commits every partition's watermark every CommitInterval and
// after CommitEvery settles, until the generation ends.
func (c *Consumer) commitLoop(gctx context.Context, gen *generation, parts map[TopicPartition]*partition, commitMu *sync.Mutex) {
	list := make([]*partition, 0, len(parts))
	for _, p := range parts {
		list = append(list, p)
	}
	tick := time.NewTicker(c.cfg.CommitInterval)
	defer tick.Stop()
	for {
		select {
		case <-gctx.Done(): // the partitions make their final commits as they drain
			return
		case <-tick.C:
		case <-c.commitCh:
		}
		c.settled.Store(0)
		c.commit(gen, list, commitMu)
	}
}

// leaveAfterDrain is run by a generation when it ends (a rebalance) while
// the member is shutting down and has not closed the group yet: once the
// partitions have drained and committed, it sends LeaveGroup itself. As a
// generation's function it holds kafka-go back meanwhile: kafka-go
// rejoins the group as soon as every function of the generation has
// returned, and would take partitions this member will never fetch, until
// it leaves on Close and the others rebalance once more. After the leave,
// kafka-go's rejoin is refused (unknown member) and it stops on Close.
func (c *Consumer) leaveAfterDrain(ctx, gctx context.Context, gen *generation, drained <-chan struct{}) {
	<-gctx.Done()
	if ctx.Err() == nil || c.closing.Load() {
		return // a rebalance (the member rejoins), or Close (kafka-go leaves)
	}
	<-drained // bounded: the drains are capped at DrainTimeout once the generation ended
	lctx, cancel := context.WithTimeout(context.Background(), c.cfg.CoordinatorTimeout)
	defer cancel()
	err := gen.leave(lctx)
	if err != nil {
		c.log.Warn("leaving the group after a rebalance during the shutdown drain failed; it is left on close", "member", gen.member, "error", err.Error())
		return
	}
	c.log.Info("left the group after a rebalance during the shutdown drain", "generation", gen.id, "member", gen.member)
}

// commit commits the watermarks of parts that moved, in one request.
func (c *Consumer) commit(gen *generation, parts []*partition, commitMu *sync.Mutex) {
	commitMu.Lock()
	defer commitMu.Unlock()
	offsets := map[string]map[int]int64{}
	for _, p := range parts {
		t := p.tracker.Load()
		if t == nil {
			continue
		}
		if w := t.Watermark(); w > p.committed {
			if offsets[p.topic] == nil {
				offsets[p.topic] = map[int]int64{}
			}
			offsets[p.topic][p.id] = w
		}
	}
	if len(offsets) == 0 {
		return
	}
	err := gen.commit(offsets)
	for _, p := range parts {
		w, ok := offsets[p.topic][p.id]
		if !ok {
			continue
		}
		if err == nil {
			p.committed = w
		}
		if h := c.cfg.Hooks.Commit; h != nil {
			h(p.topic, p.id, w, err)
		}
	}
	if err != nil {
		var what any = offsets
		if len(c.cfg.Topics) == 1 {
			what = offsets[c.cfg.Topics[0]] // as it always was with one topic
		}
		c.log.Warn("commit failed", "generation", gen.id, "offsets", fmt.Sprint(what), "error", err.Error())
	}
}

// Status is a snapshot for readiness and the status page.
type Status struct {
	Joined     bool
	Generation int32
	// MissingTopics: the input topics the broker says do not exist; the
	// member waits for them before joining.
	MissingTopics []string
	Partitions    []PartitionStatus
}

// PartitionStatus is one assigned partition.
type PartitionStatus struct {
	Topic     string
	Partition int
	Committed int64 // by this member in this generation; -1 when none yet
	Pending   int   // fetched, not settled
	Tracked   int   // from the oldest unsettled record on, settled or not
	OldestAge time.Duration
	// SinceStep is how long ago the partition's fetch loop last made a
	// step (a fetch answered or failed); zero before its start.
	SinceStep time.Duration
}

// StepBound is the longest a healthy partition's fetch loop goes without a
// step: a fetch the broker holds for FetchMaxWait, its time limit beyond
// that, and the longest wait before a failed fetch is retried. A loop that
// goes longer while it has records to fetch and none in flight is wedged.
func (c *Consumer) StepBound() time.Duration {
	return c.cfg.FetchMaxWait + fetchTimeout + fetchRetryMax
}

// Status returns the member's current assignment and progress.
func (c *Consumer) Status() Status {
	c.mu.Lock()
	st := Status{Joined: c.joined, Generation: c.genID}
	if m := c.missing.Load(); m != nil {
		st.MissingTopics = *m
	}
	parts := c.partitions
	c.mu.Unlock()
	for _, p := range parts {
		ps := PartitionStatus{Topic: p.topic, Partition: p.id, Committed: -1}
		if at := p.stepAt.Load(); at != 0 {
			ps.SinceStep = time.Since(time.Unix(0, at))
		}
		if t := p.tracker.Load(); t != nil {
			ps.Pending = t.Pending()
			ps.Tracked = t.Len()
			if _, at, ok := t.Oldest(); ok {
				ps.OldestAge = time.Since(at)
			}
			ps.Committed = t.Watermark() // what the next commit will carry
		}
		st.Partitions = append(st.Partitions, ps)
	}
	slices.SortFunc(st.Partitions, func(a, b PartitionStatus) int {
		return compareTP(TopicPartition{a.Topic, a.Partition}, TopicPartition{b.Topic, b.Partition})
	})
	return st
}
