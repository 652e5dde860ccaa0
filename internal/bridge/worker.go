package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/admin"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/consumer"
	"github.com/cxbridge/cxbridge/internal/dispatch"
	"github.com/cxbridge/cxbridge/internal/dlq"
	"github.com/cxbridge/cxbridge/internal/telemetry"
	"github.com/cxbridge/cxbridge/internal/tracing"
)

// Settings are the validated settings of one worker.
type Settings struct {
	CXone  config.CXone
	Kafka  config.Kafka
	Worker config.Worker
	// Tuning for tests and the embedded stack; zero values take the defaults.
	JoinBackoff            time.Duration
	PartitionWatchInterval time.Duration
	// FetchHook, for fault-injection tests: called before each fetch of a
	// partition; it may block until ctx ends (consumer.Hooks.Fetch).
	FetchHook func(ctx context.Context, topic string, partition int)
}

// Worker is one cxbridge worker: a consumer-group member that publishes to
// CXone, dead-letters what can never be delivered and serves the admin
// endpoints.
type Worker struct {
	s        Settings
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *telemetry.Metrics
	pub      *CXone
	dlq      *dlq.Writer
	disp     *dispatch.Dispatcher
	consumer *consumer.Consumer
	admin    *admin.Server
	history  *admin.History // the status page's charts, sampled while Run runs

	kafkaClient *kafka.Client
	transport   *kafka.Transport          // the DLQ writer's and kafkaClient's; closed by Run
	dialer      *kafka.Dialer             // TLS and SASL, for the start-up check
	offsets     consumer.GroupLags        // the group's, as last read by watchLag; under mu
	partitions  int                       // the input topics' partition count (all topics), last read; under mu
	held        []consumer.TopicPartition // the partitions this member holds, as of the last assignment; under mu
	lagNow      chan struct{}             // asks watchLag for a read at once (an assignment)

	groupWatch     *groupWatch  // used by watchLag only
	verdict        groupVerdict // its last; under mu
	unservedLogged bool         // under mu

	mu       sync.Mutex
	kafkaErr error // the start-up check's last failed attempt, until it connects
	tokenErr error
	dlqErr   error
	dlqAt    time.Time
	wedged   bool // checkLive's last verdict; under mu
}

// NewWorker builds a worker from validated settings: one constructor per
// component below, each wired to the metrics and to the worker's readiness.
func NewWorker(s Settings, log *slog.Logger) (*Worker, error) {
	w := &Worker{s: s, log: log, reg: prometheus.NewRegistry(),
		groupWatch: newGroupWatch(unservedBound(s)), lagNow: make(chan struct{}, 1)}
	w.metrics = telemetry.New(w.reg, attemptOutcomes...)
	var err error
	if w.pub, err = w.newPublisher(); err != nil {
		return nil, err
	}
	if w.transport, err = s.Kafka.Transport(); err != nil {
		return nil, err
	}
	if w.dialer, err = s.Kafka.Dialer(); err != nil {
		return nil, err
	}
	w.kafkaClient = &kafka.Client{Addr: kafka.TCP(s.Kafka.BrokerList()...), Timeout: 10 * time.Second, Transport: w.transport}
	if w.dlq, err = w.newDLQWriter(); err != nil {
		return nil, err
	}
	if w.disp, err = w.newDispatcher(); err != nil {
		return nil, err
	}
	hooks := processorHooks(w.metrics)
	hooks.Settled = telemetry.NewProgress(w.reg, time.Now()).Settled(hooks.Settled)
	prog, err := s.Worker.Transform.Load() // compiled by Validate already: no second compile
	if err != nil {
		return nil, err
	}
	proc := NewProcessor(w.pub, w.dlq, log, hooks).WithTransform(prog)
	if w.consumer, err = w.newConsumer(proc); err != nil {
		return nil, err
	}
	w.watchGauges()
	w.admin = w.newAdmin()
	return w, nil
}

// newPublisher builds the CXone publisher; its token requests feed the
// metrics and /readyz's cxone_token.
func (w *Worker) newPublisher() (*CXone, error) {
	return NewCXone(w.s.CXone, w.log, publishHooks(w.metrics), func(expiresAt int64, err error) {
		w.metrics.ObserveToken(tokenResult(err), expiresAt)
		w.mu.Lock()
		w.tokenErr = err
		w.mu.Unlock()
	})
}

// newDLQWriter builds the DLQ writer on the worker's Kafka transport.
func (w *Worker) newDLQWriter() (*dlq.Writer, error) {
	return dlq.NewWriter(dlq.WriterConfig{
		Brokers: w.s.Kafka.BrokerList(), Topic: w.s.Kafka.DLQTopic, Transport: w.transport, Logger: w.log,
		OnFailure: func(err error) { w.metrics.ObserveDLQWriteFailure(dlqFailureKind(err)) },
	})
}

// newDispatcher builds the dispatcher of --ordering and the in-flight bounds.
func (w *Worker) newDispatcher() (*dispatch.Dispatcher, error) {
	mode, err := dispatch.ParseMode(w.s.Worker.Ordering)
	if err != nil {
		return nil, err
	}
	d := dispatch.New(mode, w.s.Worker.MaxInFlight,
		dispatch.MaxBytes(w.s.Worker.MaxInFlightBytes), dispatch.LaneShare(config.LaneShare(w.s.Worker.MaxInFlight)))
	d.OnPanic(func(j dispatch.Job, v any) {
		w.log.Error("record processing panicked; the record stays unsettled", "topic", j.Topic, "partition", j.Partition, "offset", j.Offset, "panic", fmt.Sprint(v))
	})
	return d, nil
}

// newConsumer builds the group member that fetches into the dispatcher
// and settles records with proc.
func (w *Worker) newConsumer(proc *Processor) (*consumer.Consumer, error) {
	s := w.s
	return consumer.New(consumer.Config{
		Brokers: s.Kafka.BrokerList(), Topics: s.Kafka.InputTopics(), GroupID: s.Kafka.GroupID, Dialer: w.dialer,
		StartOffset:    s.Kafka.StartOffsetValue(),
		SessionTimeout: s.Kafka.SessionTimeout, RebalanceTimeout: s.Kafka.RebalanceTimeout,
		HeartbeatInterval: s.Kafka.HeartbeatInterval, JoinBackoff: s.JoinBackoff,
		PartitionWatchInterval: s.PartitionWatchInterval,
		FetchMaxBytes:          s.Kafka.FetchMaxBytes, FetchMaxWait: s.Kafka.FetchMaxWait,
		MaxUncommitted: s.Worker.MaxUncommittedPerPartition,
		CommitInterval: s.Worker.CommitInterval,
		DrainTimeout:   s.Worker.DrainTimeout, ShutdownTimeout: s.Worker.ShutdownTimeout,
		Logger: w.log,
		Hooks: consumer.Hooks{
			Commit: func(topic string, p int, off int64, err error) { w.metrics.ObserveCommit(topic, p, off, err) },
			Assigned: func(_ int32, partitions []consumer.TopicPartition) {
				w.assigned(context.Background(), partitions)
			},
			Fetch: s.FetchHook,
		},
	}, w.disp, proc.ProcessFetched)
}

// watchGauges registers the gauges read from the components at every scrape.
func (w *Worker) watchGauges() {
	w.metrics.Watch(telemetry.Gauges{
		InFlightRecords: w.disp.InFlight,
		InFlightBytes:   w.disp.InFlightBytes,
		OldestUnsettledAge: func() time.Duration {
			var oldest time.Duration
			for _, p := range w.consumer.Status().Partitions {
				oldest = max(oldest, p.OldestAge)
			}
			return oldest
		},
		DLQRefusedRecords:  func() int { n, _ := w.dlq.Refused(); return n },
		RateLimitPerSecond: w.pub.RateLimit,
	})
}

// newAdmin builds the admin server: /readyz's components, the status page
// and, with --pprof, the profiles.
func (w *Worker) newAdmin() *admin.Server {
	a := admin.New(w.reg, 0,
		admin.Component{Name: "consumer", Check: w.checkConsumer},
		// CXone's state is every member's: reported, not a reason to be
		// taken out of service (see admin.Component.Advisory).
		admin.Component{Name: "cxone_breaker", Check: w.checkBreaker, Advisory: true},
		admin.Component{Name: "cxone_rate_limit", Check: w.checkGate, Advisory: true},
		admin.Component{Name: "cxone_token", Check: w.checkToken, Advisory: true},
		admin.Component{Name: "dlq", Check: w.checkDLQ},
	)
	a.SetLiveness(w.checkLive)
	if w.s.Worker.Pprof {
		a.EnablePprof()
	}
	page, data := admin.StatusHandlers(func() any { return w.Status() })
	a.Handle("GET /{$}", page)
	a.Handle("GET /status.json", data)
	w.history = admin.NewStatusHistory(w.statusSample)
	a.Handle("GET /history.json", w.history)
	return a
}

// Registry is the worker's metrics registry.
func (w *Worker) Registry() *prometheus.Registry { return w.reg }

// Admin is the worker's admin handler.
func (w *Worker) Admin() *admin.Server { return w.admin }

// Consumer returns the consumer, for status.
func (w *Worker) Consumer() *consumer.Consumer { return w.consumer }

// BreakerState is the CXone circuit breaker's state.
func (w *Worker) BreakerState() gobreaker.State { return w.pub.BreakerState() }

// InFlight is the number of records held.
func (w *Worker) InFlight() int { return w.disp.InFlight() }

// Dispatcher holds the records in flight, for status and tests.
func (w *Worker) Dispatcher() *dispatch.Dispatcher { return w.disp }

// Run serves the admin endpoints and consumes until ctx ends, then shuts
// down gracefully: stop fetching, finish in-flight records within the
// shutdown timeout, commit, leave the group. It returns nil after a clean
// shutdown.
//
// Brokers that cannot be reached are waited for (the consumer logs every
// attempt to join the group). Alongside, a start-up check connects with the
// worker's TLS and SASL settings: brokers refusing the credentials or the
// TLS handshake stop the worker at once, and Run returns a
// *consumer.KafkaSetupError naming the settings to check.
func (w *Worker) Run(ctx context.Context) error {
	stopTracing, err := tracing.Setup(ctx, w.log) // off unless OTEL_EXPORTER_OTLP_* asks
	if err != nil {
		return err
	}
	defer stopTracing() //nolint:errcheck // logged
	defer w.transport.CloseIdleConnections()
	defer w.dlq.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	actx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	adminErr := make(chan error, 1)
	go func() {
		adminErr <- admin.Serve(actx, w.s.Worker.AdminAddr, w.admin, w.log, nil)
	}()
	w.log.Info("cxbridge worker starting",
		"brokers", w.s.Kafka.Brokers, "input_topic", w.s.Kafka.InputTopic, "group_id", w.s.Kafka.GroupID,
		"dlq_topic", w.s.Kafka.DLQTopic, "ordering", w.s.Worker.Ordering, "max_in_flight", w.s.Worker.MaxInFlight, "max_in_flight_bytes", w.s.Worker.MaxInFlightBytes,
		"cxone_base_url", w.s.CXone.BaseURL, "token_style", w.s.CXone.TokenStyle, "admin_addr", w.s.Worker.AdminAddr,
		"kafka_tls", w.s.Kafka.TLS, "kafka_sasl_mechanism", w.s.Kafka.SASLMechanism,
		"transform", w.s.Worker.Transform.Set())
	var wg sync.WaitGroup
	wg.Go(func() { w.beat(ctx) })
	wg.Go(func() { w.watchDLQ(ctx) })
	wg.Go(func() { w.watchLag(ctx) })
	wg.Go(func() { w.history.Run(ctx) })
	setupErr := make(chan error, 1)
	wg.Go(func() {
		maxWait := 5 * time.Second
		if w.s.JoinBackoff > 0 {
			maxWait = min(w.s.JoinBackoff, maxWait)
		}
		err := consumer.CheckKafka(ctx, &w.s.Kafka, w.dialer, w.log, maxWait, func(err error) {
			w.mu.Lock()
			w.kafkaErr = err
			w.mu.Unlock()
		})
		if setup, ok := errors.AsType[*consumer.KafkaSetupError](err); ok {
			w.log.Error("Kafka refuses the connection settings; stopping", "error", setup.Error())
			setupErr <- setup
			cancel()
		}
	})
	err = w.consumer.Run(ctx)
	cancel()
	wg.Wait()
	select {
	case serr := <-setupErr:
		err = serr
	default:
	}
	stopAdmin()
	if aerr := <-adminErr; aerr != nil && err == nil {
		err = fmt.Errorf("admin server on %s: %w", w.s.Worker.AdminAddr, aerr)
	}
	w.log.Info("cxbridge worker stopped")
	return err
}

func (w *Worker) beat(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.admin.Beat()
		}
	}
}

// watchDLQ checks every 10 s that the DLQ topic is writable (metadata only).
func (w *Worker) watchDLQ(ctx context.Context) {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := w.dlq.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.dlqErr, w.dlqAt = err, time.Now()
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}
