package config

import (
	"log/slog"
	"strings"
	"time"

	"github.com/cxbridge/cxbridge/internal/dispatch"
)

// Worker holds the settings of the worker process itself. Their defaults
// are DefaultWorker's.
type Worker struct {
	Ordering    string // key, partition or none.
	MaxInFlight int
	// MaxInFlightBytes bounds the bytes (key, value, headers) of the records
	// held.
	MaxInFlightBytes int64
	// MaxUncommittedPerPartition bounds the records of one partition fetched
	// from its oldest unsettled record on.
	MaxUncommittedPerPartition int
	ShutdownTimeout            time.Duration
	DrainTimeout               time.Duration // Budget of a revoked partition's drain.
	CommitInterval             time.Duration
	AdminAddr                  string
	Pprof                      bool   // Serve /debug/pprof/ on the admin address.
	LogLevel                   string // debug, info, warn, error.
	LogFormat                  string // auto (text on a terminal, else json), json or text.

	// Transform is --transform / --transform-file: the jq program that maps
	// records to events.
	Transform Transform
}

// LaneShare is the most records one key (one partition in partition
// ordering) may hold of maxInFlight: a quarter, at least one. A key whose
// records cannot settle (a DLQ refusing one for good) then leaves three
// quarters of the slots to the other partitions.
func LaneShare(maxInFlight int) int { return max(1, maxInFlight/4) }

// Register defines the worker flags on fs.
func (w *Worker) Register(fs *FlagSet) {
	d := DefaultWorker()
	fs.StringVar(&w.Ordering, "ordering", or(w.Ordering, d.Ordering), "ordering: key (same key one at a time, in offset order), partition (one at a time per partition) or none")
	fs.IntVar(&w.MaxInFlight, "max-in-flight", orInt(w.MaxInFlight, d.MaxInFlight), "most records held at once; fetching waits while it is reached. "+
		"One key (in --ordering partition, one partition) holds at most a quarter of them: the records queued behind it make only its partition's fetching wait")
	fs.Int64Var(&w.MaxInFlightBytes, "max-in-flight-bytes", orInt64(w.MaxInFlightBytes, d.MaxInFlightBytes),
		"most bytes of records (key + value + headers) held at once; fetching waits while it is reached, and a record larger than this is held alone. "+
			"16 MiB (256 records of 64 KiB) keeps a worker within half of deploy/k8s's 512 MiB limit: a held record costs up to 4 times its size while it is processed, "+
			"6 partitions hold up to 3 records' worth each (a fetch response and two records in hand-over) of up to 1 MiB (a topic's default max.message.bytes), "+
			"and Go's collector lets the heap reach twice what is live: 2 × (4 × 16 + 6 × 3 × 1 + 25 runtime) = 214 MiB")
	fs.IntVar(&w.MaxUncommittedPerPartition, "max-uncommitted-per-partition", orInt(w.MaxUncommittedPerPartition, d.MaxUncommittedPerPartition),
		"most records of one partition fetched from its oldest unsettled record on (none of them can be committed before it settles); "+
			"that partition's fetching waits while it is reached, the others go on. It bounds what a crash fetches again per partition")
	fs.DurationVar(&w.ShutdownTimeout, "shutdown-timeout", orDur(w.ShutdownTimeout, d.ShutdownTimeout), "on SIGTERM, how long in-flight records may take to finish; the worker stays a member of the group meanwhile, then commits and leaves (allow 10s more before SIGKILL)")
	fs.DurationVar(&w.DrainTimeout, "drain-timeout", orDur(w.DrainTimeout, d.DrainTimeout), "on a rebalance, how long a revoked partition's records may take to finish (the member sends no heartbeat meanwhile: with --kafka-heartbeat-interval it must stay below the session and rebalance timeouts)")
	fs.DurationVar(&w.CommitInterval, "commit-interval", orDur(w.CommitInterval, d.CommitInterval), "how often settled offsets are committed")
	fs.StringVar(&w.AdminAddr, "admin-addr", or(w.AdminAddr, d.AdminAddr), "address of /healthz, /readyz and /metrics")
	fs.BoolVar(&w.Pprof, "pprof", w.Pprof, "serve Go's profiles (/debug/pprof/) on --admin-addr too; off by default: they expose the process's memory and stacks to whoever reaches the port")
	fs.StringVar(&w.LogLevel, "log-level", or(w.LogLevel, d.LogLevel), "log level: debug, info, warn or error")
	fs.StringVar(&w.LogFormat, "log-format", or(w.LogFormat, d.LogFormat), "log format: json, text, or auto — text when stderr is a terminal (make run), JSON otherwise (containers, files, pipes)")
	w.Transform.Register(fs)
}

func orInt64(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

// Validate adds a problem for every bad worker setting. k holds the
// group's timings: a revoked partition drains while the member sends no
// heartbeat (kafka-go's heartbeats belong to the generation that ended),
// after up to a heartbeat interval without one, so the drain plus a
// heartbeat interval must end before the coordinator gives the member up:
// before its session timeout and before the rebalance timeout.
//
// --shutdown-timeout is not bounded by them: at shutdown the member keeps
// its generation, and so its heartbeats, while it drains (should a
// rebalance end the generation meanwhile, the rest of the drain is capped
// at --drain-timeout). It only has to be positive; the deployment's grace
// period must exceed it by the time to commit and leave (10s).
func (w *Worker) Validate(p *Problems, k *Kafka) {
	// dispatch.ParseMode is the one parser of --ordering (the worker's
	// dispatcher uses it too); the setting takes the canonical names only.
	if m, err := dispatch.ParseMode(w.Ordering); err != nil || string(m) != w.Ordering {
		p.Add("ordering", "must be key, partition or none, got %q", w.Ordering)
	}
	if w.MaxInFlight < 1 || w.MaxInFlight > 100_000 {
		p.Add("max-in-flight", "must be between 1 and 100000, got %d", w.MaxInFlight)
	}
	if w.MaxInFlightBytes < 1<<20 || w.MaxInFlightBytes > 1<<40 {
		p.Add("max-in-flight-bytes", "must be between 1 MiB (1048576) and 1 TiB, got %d", w.MaxInFlightBytes)
	}
	if w.MaxUncommittedPerPartition < 1 || w.MaxUncommittedPerPartition > 10_000_000 {
		p.Add("max-uncommitted-per-partition", "must be between 1 and 10000000, got %d", w.MaxUncommittedPerPartition)
	}
	positive(p, "shutdown-timeout", w.ShutdownTimeout)
	positive(p, "drain-timeout", w.DrainTimeout)
	positive(p, "commit-interval", w.CommitInterval)
	if w.DrainTimeout > 0 && k.HeartbeatInterval > 0 {
		for _, lim := range []struct {
			name string
			d    time.Duration
		}{{"kafka-session-timeout", k.SessionTimeout}, {"kafka-rebalance-timeout", k.RebalanceTimeout}} {
			if lim.d > 0 && w.DrainTimeout+k.HeartbeatInterval >= lim.d {
				p.Add("drain-timeout", "%s plus --kafka-heartbeat-interval (%s) must be shorter than --%s (%s): a revoked partition drains without heartbeats, and the group would drop the member first",
					w.DrainTimeout, k.HeartbeatInterval, lim.name, lim.d)
			}
		}
	}
	if w.AdminAddr == "" {
		p.Add("admin-addr", "is required")
	}
	if _, ok := ParseLevel(w.LogLevel); !ok {
		p.Add("log-level", "must be debug, info, warn or error, got %q", w.LogLevel)
	}
	if w.LogFormat != "json" && w.LogFormat != "text" && w.LogFormat != "auto" {
		p.Add("log-format", "must be auto, json or text, got %q", w.LogFormat)
	}
	w.Transform.Validate(p)
}

// ParseLevel reads a log level name.
func ParseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}
