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
	"github.com/cxbridge/cxbridge/internal/cxone"
	"github.com/cxbridge/cxbridge/internal/delivery"
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

	lag         *prometheus.GaugeVec
	kafkaClient *kafka.Client
	transport   *kafka.Transport // the DLQ writer's and kafkaClient's; closed by Run
	dialer      *kafka.Dialer    // TLS and SASL, for the start-up check
	offsets     consumer.Offsets // the group's, as last read by watchLag; under mu
	partitions  int              // the input topic's partition count, last read; under mu
	held        []int            // the partitions this member holds, as of the last assignment; under mu
	lagNow      chan struct{}    // asks watchLag for a read at once (an assignment)

	groupWatch     *groupWatch  // used by watchLag only
	verdict        groupVerdict // its last; under mu
	unservedLogged bool         // under mu
	unservedGauge  prometheus.Gauge
	rejoins        prometheus.Counter

	mu       sync.Mutex
	kafkaErr error // the start-up check's last failed attempt, until it connects
	tokenErr error
	dlqErr   error
	dlqAt    time.Time
}

// NewWorker builds a worker from validated settings.
func NewWorker(s Settings, log *slog.Logger) (*Worker, error) {
	w := &Worker{s: s, log: log, reg: prometheus.NewRegistry()}
	w.metrics = telemetry.New(w.reg)
	m := w.metrics
	progress := telemetry.NewProgress(w.reg, time.Now())

	pub, err := NewCXone(s.CXone, log, delivery.Hooks{
		Attempt:      m.ObserveAttempt,
		Retry:        m.Retries.Inc,
		Resend:       m.Resends.Inc,
		GateWait:     func(d time.Duration) { m.RateLimitWait.Add(d.Seconds()) },
		BreakerState: m.ObserveBreaker,
	}, func(expiresAt int64, err error) {
		m.ObserveToken(expiresAt, err)
		w.mu.Lock()
		w.tokenErr = err
		w.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	w.pub = pub

	transport, err := s.Kafka.Transport()
	if err != nil {
		return nil, err
	}
	w.transport = transport
	dialer, err := s.Kafka.Dialer()
	if err != nil {
		return nil, err
	}
	w.dialer = dialer
	w.dlq, err = dlq.NewWriter(dlq.WriterConfig{
		Brokers: s.Kafka.BrokerList(), Topic: s.Kafka.DLQTopic, Transport: transport,
		Logger: log, OnFailure: func(err error) {
			kind := "transient"
			if dlq.Permanent(err) {
				kind = "permanent"
			}
			m.DLQWriteFailures.WithLabelValues(kind).Inc()
		},
	})
	if err != nil {
		return nil, err
	}
	mode, err := dispatch.ParseMode(s.Worker.Ordering)
	if err != nil {
		return nil, err
	}
	w.disp = dispatch.New(mode, s.Worker.MaxInFlight,
		dispatch.MaxBytes(s.Worker.MaxInFlightBytes), dispatch.LaneShare(config.LaneShare(s.Worker.MaxInFlight)))
	w.disp.OnPanic(func(j dispatch.Job, v any) {
		log.Error("record processing panicked; the record stays unsettled", "partition", j.Partition, "offset", j.Offset, "panic", fmt.Sprint(v))
	})
	proc := NewProcessor(pub, w.dlq, log, ProcessorHooks{
		Consumed:     m.Consumed.Inc,
		Settled:      progress.Settled(m.ObserveSettled),
		DeadLettered: func(reason string) { m.DeadLetters.WithLabelValues(reason).Inc() },
	})
	topic := s.Kafka.InputTopic
	w.consumer, err = consumer.New(consumer.Config{
		Brokers: s.Kafka.BrokerList(), Topic: topic, GroupID: s.Kafka.GroupID, Dialer: dialer,
		StartOffset:    s.Kafka.StartOffsetValue(),
		SessionTimeout: s.Kafka.SessionTimeout, RebalanceTimeout: s.Kafka.RebalanceTimeout,
		HeartbeatInterval: s.Kafka.HeartbeatInterval, JoinBackoff: s.JoinBackoff,
		PartitionWatchInterval: s.PartitionWatchInterval,
		FetchMaxBytes:          s.Kafka.FetchMaxBytes, FetchMaxWait: s.Kafka.FetchMaxWait,
		MaxUncommitted: s.Worker.MaxUncommittedPerPartition,
		CommitInterval: s.Worker.CommitInterval,
		DrainTimeout:   s.Worker.DrainTimeout, ShutdownTimeout: s.Worker.ShutdownTimeout,
		Logger: log,
		Hooks: consumer.Hooks{
			Commit:   func(p int, off int64, err error) { m.ObserveCommit(topic, p, off, err) },
			Assigned: func(_ int32, partitions []int) { w.assigned(context.Background(), partitions) },
		},
	}, w.disp, proc.Process)
	if err != nil {
		return nil, err
	}
	w.groupWatch = newGroupWatch(unservedBound(s))
	w.lagNow = make(chan struct{}, 1)
	w.kafkaClient = &kafka.Client{Addr: kafka.TCP(s.Kafka.BrokerList()...), Timeout: 10 * time.Second, Transport: transport}
	w.registerGauges()
	w.admin = admin.New(w.reg, 0,
		admin.Component{Name: "consumer", Check: w.checkConsumer},
		// CXone's state is every member's: reported, not a reason to be
		// taken out of service (see admin.Component.Advisory).
		admin.Component{Name: "cxone_breaker", Check: w.checkBreaker, Advisory: true},
		admin.Component{Name: "cxone_rate_limit", Check: w.checkGate, Advisory: true},
		admin.Component{Name: "cxone_token", Check: w.checkToken, Advisory: true},
		admin.Component{Name: "dlq", Check: w.checkDLQ},
	)
	if s.Worker.Pprof {
		w.admin.EnablePprof()
	}
	w.registerStatusPage()
	return w, nil
}

func (w *Worker) registerGauges() {
	w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_in_flight_records", Help: "Records held: queued behind their key or being published."},
		func() float64 { return float64(w.disp.InFlight()) }))
	w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_in_flight_bytes", Help: "Bytes of the records held (key, value, headers), bounded by --max-in-flight-bytes."},
		func() float64 { return float64(w.disp.InFlightBytes()) }))
	w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_oldest_unsettled_age_seconds", Help: "Age of the oldest fetched, unsettled record."},
		func() float64 {
			var oldest time.Duration
			for _, p := range w.consumer.Status().Partitions {
				oldest = max(oldest, p.OldestAge)
			}
			return oldest.Seconds()
		}))
	w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_dlq_refused_records", Help: "DLQ writes in progress whose record the DLQ topic refuses for good (retried until it accepts it; their partitions are not committed past them)."},
		func() float64 { n, _ := w.dlq.Refused(); return float64(n) }))
	w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxbridge_rate_limit_per_second", Help: "The client-side limit on publish attempts per second in force (adapted to CXone's 429s); 0 while there is none."},
		func() float64 { return w.pub.RateLimit() }))
	w.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cxbridge_consumer_lag", Help: "Records of the partitions this member holds that the group has not committed (end offset − committed offset)."},
		[]string{"topic", "partition"})
	w.reg.MustRegister(w.lag)
	w.unservedGauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "cxbridge_group_unserved_partitions", Help: "Partitions of the input topic with uncommitted records whose committed offset has not moved for the bound (see /readyz), that this member does not hold or holds without fetching: the group leaves them to nobody alive."})
	w.rejoins = prometheus.NewCounter(prometheus.CounterOpts{Name: "cxbridge_group_rejoins_total", Help: "Times this member left the consumer group and joined it again because the group left partitions unserved."})
	w.reg.MustRegister(w.unservedGauge, w.rejoins)
	w.metrics.BreakerState.Set(telemetry.BreakerValue(gobreaker.StateClosed))
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
// *KafkaSetupError naming the settings to check.
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
		"kafka_tls", w.s.Kafka.TLS, "kafka_sasl_mechanism", w.s.Kafka.SASLMechanism)
	var wg sync.WaitGroup
	wg.Go(func() { w.beat(ctx) })
	wg.Go(func() { w.watchDLQ(ctx) })
	wg.Go(func() { w.watchLag(ctx, w.lag, w.kafkaClient) })
	setupErr := make(chan error, 1)
	wg.Go(func() {
		maxWait := 5 * time.Second
		if w.s.JoinBackoff > 0 {
			maxWait = min(w.s.JoinBackoff, maxWait)
		}
		err := checkKafka(ctx, &w.s.Kafka, w.dialer, w.log, maxWait, func(err error) {
			w.mu.Lock()
			w.kafkaErr = err
			w.mu.Unlock()
		})
		if setup, ok := errors.AsType[*KafkaSetupError](err); ok {
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

func (w *Worker) checkConsumer() (bool, string) {
	st := w.consumer.Status()
	w.mu.Lock()
	v, kerr := w.verdict, w.kafkaErr
	w.mu.Unlock()
	var unserved string
	if len(v.Unserved) > 0 {
		unserved = "; the group leaves partitions unserved: " + describeUnserved(v.Unserved) + "; " + v.note()
	}
	if !st.Joined {
		if kerr != nil {
			return false, "not a member of group " + w.s.Kafka.GroupID + " yet: Kafka brokers not reachable: " + kerr.Error()
		}
		return false, "not a member of group " + w.s.Kafka.GroupID + " yet" + unserved
	}
	return true, fmt.Sprintf("generation %d, %d partitions", st.Generation, len(st.Partitions)) + unserved
}

func (w *Worker) checkBreaker() (bool, string) {
	switch s := w.pub.BreakerState(); s {
	case gobreaker.StateOpen:
		return false, "circuit breaker open: CXone is failing; consumption paused"
	default:
		return true, s.String()
	}
}

func (w *Worker) checkGate() (bool, string) {
	if until := w.pub.GateClosedUntil(); time.Now().Before(until) {
		return false, "CXone answered 429: publishing paused until " + until.UTC().Format(time.RFC3339)
	}
	return true, "open"
}

func (w *Worker) checkToken() (bool, string) {
	w.mu.Lock()
	err := w.tokenErr
	w.mu.Unlock()
	switch {
	case err == nil:
		return true, "ok"
	case cxone.IsRedirect(err):
		return false, "token endpoint redirects, and redirects are not followed (check --cxone-token-url, --cxone-base-url): " + err.Error()
	case cxone.IsConfigError(err):
		return false, "token endpoint refuses the credentials (check --cxone-client-id/secret, --cxone-token-style): " + err.Error()
	default:
		return false, "token endpoint unavailable: " + err.Error()
	}
}

func (w *Worker) checkDLQ() (bool, string) {
	w.mu.Lock()
	err, at := w.dlqErr, w.dlqAt
	w.mu.Unlock()
	if n, rerr := w.dlq.Refused(); n > 0 {
		return false, fmt.Sprintf("DLQ topic %s refuses %d record(s) for good (check its ACLs, policy and cleanup.policy): retrying them until it accepts them; their partitions are not committed past them: %v",
			w.s.Kafka.DLQTopic, n, rerr)
	}
	switch {
	case at.IsZero():
		return false, "not checked yet"
	case err != nil:
		return false, "DLQ topic " + w.s.Kafka.DLQTopic + " not writable: " + err.Error()
	}
	return true, "writable"
}
