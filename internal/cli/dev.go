package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/bridge"
	"github.com/cxbridge/cxbridge/internal/certs"
	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/devstack"
	"github.com/cxbridge/cxbridge/internal/produce"
	"github.com/cxbridge/cxbridge/internal/sim"
	"github.com/cxbridge/cxbridge/internal/telemetry"
)

func init() {
	register("dev", "run everything locally: embedded broker, CXone simulator, producer and worker", runDev)
}

type devSettings struct {
	worker       bridge.Settings
	only         string
	brokerAddr   string
	simAddr      string
	dataDir      string
	partitions   int
	rate         float64
	keys         int
	invalidRatio float64
	shape        string // the producer's --shape
	summaryEvery time.Duration
	brokerSASL   string // mechanism:user:password the embedded broker requires
	brokerTLSDir string // the embedded broker serves TLS, its CA written here
}

var devParts = []string{"broker", "sim", "producer", "worker"}

func devFlags(s *devSettings) *config.FlagSet {
	s.worker.CXone.ClientID = sim.DefaultClientID
	s.worker.CXone.ClientSecret = config.NewSecret(sim.DefaultClientSecret)
	s.worker.Worker.LogLevel = "warn"
	fs := workerFlags("dev", &s.worker)
	fs.StringVar(&s.only, "only", strings.Join(devParts, ","), "parts to start, comma-separated: broker, sim, producer, worker (e.g. --only broker serves just the broker)")
	fs.StringVar(&s.brokerAddr, "broker-addr", "127.0.0.1:9092", "address of the embedded Kafka-protocol broker (loopback)")
	fs.StringVar(&s.simAddr, "sim-addr", "127.0.0.1:8081", "address of the CXone simulator")
	fs.StringVar(&s.dataDir, "data-dir", "", "directory where the embedded broker keeps its records and committed offsets, so that a restart finds them (default: memory only)")
	fs.IntVar(&s.partitions, "partitions", 6, "partitions of the topics the embedded broker creates")
	fs.Float64Var(&s.rate, "rate", 50, "records per second the producer writes")
	fs.IntVar(&s.keys, "keys", 100, "distinct keys the producer uses")
	fs.Float64Var(&s.invalidRatio, "invalid-ratio", 0.02, "share of bad records the producer writes")
	shapeFlag(fs, &s.shape)
	fs.DurationVar(&s.summaryEvery, "summary-every", 5*time.Second, "how often the summary line is printed")
	fs.StringVar(&s.brokerSASL, "broker-sasl-user", "", "make the embedded broker require SASL, accepting this mechanism:user:password (the worker and producer use it unless --kafka-sasl-mechanism is given)")
	fs.StringVar(&s.brokerTLSDir, "broker-tls-dir", "", "make the embedded broker serve TLS only, with a fresh certificate whose CA is written to DIR/ca.pem (the worker and producer trust it unless --kafka-tls is given)")
	return fs
}

func runDev(ctx context.Context, args []string, env Env) error {
	var s devSettings
	fs := devFlags(&s)
	if err := fs.Parse(args, env.Stdout); err != nil {
		return err
	}
	parts, stack, err := s.resolve(fs)
	if err != nil {
		return err
	}
	level, _ := config.ParseLevel(s.worker.Worker.LogLevel)
	log := telemetry.NewLogger(env.Stderr, s.worker.Worker.LogFormat, level)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	fail := func(err error) { cancel(err) }

	if parts["broker"] {
		b, err := s.startBroker(env, stack)
		if err != nil {
			return err
		}
		defer b.Close()
	}
	var simServer *sim.Server
	if parts["sim"] {
		if simServer, err = s.startSim(ctx, env, log); err != nil {
			return err
		}
	}
	var pst produce.Stats
	if parts["producer"] {
		tr, err := s.worker.Kafka.Transport() // the worker's TLS and SASL settings
		if err != nil {
			return err
		}
		defer tr.CloseIdleConnections()
		wg.Go(func() {
			if err := produce.Run(ctx, s.producer(tr), &pst, nil); err != nil {
				fail(err)
			}
		})
		fmt.Fprintf(env.Stdout, "dev: producer writing %.0f %s records/s (%.0f%% bad) to %s\n", s.rate, s.shape, 100*s.invalidRatio, s.worker.Kafka.FirstInputTopic())
		if s.shape == produce.ShapeOrder && parts["worker"] && !s.worker.Worker.Transform.Set() {
			fmt.Fprintln(env.Stdout, "dev: orders are no CXone events: without --transform the worker dead-letters them (invalid_event)")
		}
	}
	var w *bridge.Worker
	if parts["worker"] {
		if w, err = bridge.NewWorker(s.worker, log); err != nil {
			return err
		}
		wg.Go(func() {
			if err := w.Run(ctx); err != nil {
				fail(err)
			}
		})
		fmt.Fprintf(env.Stdout, "dev: worker in group %s; admin on %s (/healthz /readyz /metrics)\n", s.worker.Kafka.GroupID, s.worker.Worker.AdminAddr)
	}
	fmt.Fprintln(env.Stdout, "dev: running; Ctrl-C stops")
	summarize(ctx, env, s.summaryEvery, &pst, simServer, w)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && err != context.Canceled && ctx.Err() != nil && err != ctx.Err() {
		return err
	}
	fmt.Fprintln(env.Stdout, "dev: stopped")
	return nil
}

// devBroker is how the embedded broker is secured: the users it requires
// (SASL) and its TLS configuration (nil: plain).
type devBroker struct {
	users []devstack.SASLUser
	tls   *tls.Config
}

// resolve checks the settings and derives the worker's from them: the
// parts to start, and, unless given, the brokers and CXone at the embedded
// ones, with their SASL user and CA. It generates the broker's certificate
// (--broker-tls-dir).
func (s *devSettings) resolve(fs *config.FlagSet) (map[string]bool, devBroker, error) {
	parts := map[string]bool{}
	var p config.Problems
	var b devBroker
	for _, part := range strings.Split(s.only, ",") {
		part = strings.TrimSpace(part)
		if !slices.Contains(devParts, part) {
			p.Add("only", "unknown part %q (want some of %s)", part, strings.Join(devParts, ", "))
		}
		parts[part] = true
	}
	if !fs.Changed("kafka-brokers") {
		s.worker.Kafka.Brokers = s.brokerAddr
	}
	if !fs.Changed("cxone-base-url") {
		s.worker.CXone.BaseURL = "http://" + s.simAddr
	}
	if s.brokerSASL != "" {
		u, err := devstack.ParseSASLUser(s.brokerSASL)
		if err != nil {
			p.Add("broker-sasl-user", "%v", err)
		} else {
			b.users = append(b.users, u)
			if parts["broker"] && !fs.Changed("kafka-sasl-mechanism") {
				k := &s.worker.Kafka
				k.SASLMechanism, k.SASLUsername, k.SASLPassword = strings.ToLower(u.Mechanism), u.User, config.NewSecret(u.Password)
			}
		}
	}
	if s.brokerTLSDir != "" && parts["broker"] {
		bundle, err := certs.New(365*24*time.Hour, "127.0.0.1", "localhost")
		if err != nil {
			return nil, b, err
		}
		files, err := bundle.WriteFiles(s.brokerTLSDir)
		if err != nil {
			return nil, b, err
		}
		b.tls = bundle.ServerConfig()
		if !fs.Changed("kafka-tls") {
			s.worker.Kafka.TLS, s.worker.Kafka.TLSCAFile = true, files.CA
		}
	}
	checkShape(&p, s.shape)
	if parts["worker"] {
		if err := validateWorker(&s.worker); err != nil {
			return nil, b, err
		}
	}
	return parts, b, p.Err()
}

// startBroker starts the embedded broker with the input and DLQ topics.
func (s *devSettings) startBroker(env Env, stack devBroker) (*devstack.Broker, error) {
	b, err := devstack.StartBroker(devstack.BrokerConfig{Addr: s.brokerAddr, Partitions: s.partitions,
		Topics: append(s.worker.Kafka.InputTopics(), s.worker.Kafka.DLQTopic), MinSessionTimeout: time.Second,
		DataDir: s.dataDir, TLS: stack.tls, SASLUsers: stack.users})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Stdout, "dev: kafka broker on %s (topics %s and %s, %d partitions)\n",
		strings.Join(b.Addrs, ","), s.worker.Kafka.InputTopic, s.worker.Kafka.DLQTopic, s.partitions)
	if stack.tls != nil {
		fmt.Fprintf(env.Stdout, "dev: the broker requires TLS: trust %s (--kafka-tls --kafka-tls-ca-file %s)\n",
			filepath.Join(s.brokerTLSDir, "ca.pem"), filepath.Join(s.brokerTLSDir, "ca.pem"))
	}
	for _, u := range stack.users {
		fmt.Fprintf(env.Stdout, "dev: the broker requires SASL: user %q, mechanism %s\n", u.User, strings.ToLower(u.Mechanism))
	}
	return b, nil
}

// startSim starts the CXone simulator; it stops with ctx.
func (s *devSettings) startSim(ctx context.Context, env Env, log *slog.Logger) (*sim.Server, error) {
	srv, url, err := sim.Start(ctx, s.simAddr, sim.Config{Logger: log})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Stdout, "dev: CXone simulator on %s (stats: %s/sim/stats)\n", url, url)
	return srv, nil
}

// producer is the producer's configuration: the worker's input topic and
// Kafka connection (tr), the dev flags' rate, keys and bad records.
func (s *devSettings) producer(tr *kafka.Transport) produce.Config {
	return produce.Config{Brokers: s.worker.Kafka.BrokerList(), Topic: s.worker.Kafka.FirstInputTopic(), Transport: tr,
		Rate: s.rate, Keys: s.keys, Size: 300, InvalidRatio: s.invalidRatio, Batch: 50, Shape: s.shape}
}

// summarize prints one line every period until ctx ends.
func summarize(ctx context.Context, env Env, every time.Duration, pst *produce.Stats, s *sim.Server, w *bridge.Worker) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastAccepted float64
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var b strings.Builder
			fmt.Fprintf(&b, "dev: produced=%d", pst.Written.Load())
			if w != nil {
				settled, by := telemetry.Sum(w.Registry(), "cxbridge_records_settled_total", "result")
				accepted := by["accepted"]
				delete(by, "accepted")
				dead := make([]string, 0, len(by))
				for _, r := range slices.Sorted(maps.Keys(by)) {
					dead = append(dead, fmt.Sprintf("%s:%.0f", r, by[r]))
				}
				rate := (accepted - lastAccepted) / now.Sub(last).Seconds()
				lastAccepted, last = accepted, now
				fmt.Fprintf(&b, " settled=%.0f accepted=%.0f dead_lettered={%s} in_flight=%d events/s=%.1f breaker=%s",
					settled, accepted, strings.Join(dead, ","), w.InFlight(), rate, w.BreakerState())
			}
			if s != nil {
				st := s.Stats()
				fmt.Fprintf(&b, " cxone_accepted=%d duplicates=%d", st.Accepted, st.Duplicates)
			}
			fmt.Fprintln(env.Stdout, b.String())
		}
	}
}
