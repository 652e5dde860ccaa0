package bridge

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cxbridge/cxbridge/internal/admin"
	"github.com/cxbridge/cxbridge/internal/telemetry"
	"github.com/cxbridge/cxbridge/internal/version"
)

// Status is the status page's data.
type Status struct {
	Version     string             `json:"version"`
	Group       string             `json:"group"`
	Topic       string             `json:"topic"`
	Ready       bool               `json:"ready"`
	Reasons     []string           `json:"reasons,omitempty"`
	Breaker     string             `json:"breaker"`
	InFlight    int                `json:"in_flight"`
	Settled     map[string]float64 `json:"settled"`
	Attempts    map[string]float64 `json:"attempts"`
	DeadLetters map[string]float64 `json:"dead_letters"`
	Partitions  []PartitionStatus  `json:"partitions"`
	// Unserved are the partitions the group leaves unserved, as this
	// member last saw (see cxbridge_group_unserved_partitions).
	Unserved     []unservedPartition `json:"unserved,omitempty"`
	UnservedNote string              `json:"unserved_note,omitempty"`
	TimeMS       int64               `json:"time_ms"`
}

// PartitionStatus is one held partition on the status page.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Committed int64  `json:"committed"` // the group's committed offset, -1 for none
	Lag       int64  `json:"lag"`
	Pending   int    `json:"pending"` // fetched, not yet settled
}

// Status returns a snapshot for the status page.
func (w *Worker) Status() Status {
	r := w.admin.Ready()
	_, settled := telemetry.Sum(w.reg, "cxbridge_records_settled_total", "result")
	_, attempts := telemetry.Sum(w.reg, "cxbridge_publish_attempts_total", "outcome")
	_, dead := telemetry.Sum(w.reg, "cxbridge_dead_letters_total", "reason")
	s := Status{
		Version: version.Get().Version, Group: w.s.Kafka.GroupID, Topic: w.s.Kafka.InputTopic,
		Ready: r.Ready, Reasons: r.Reasons, Breaker: w.pub.BreakerState().String(), InFlight: w.disp.InFlight(),
		Settled: settled, Attempts: attempts, DeadLetters: dead, TimeMS: time.Now().UnixMilli(),
	}
	w.mu.Lock()
	offsets := w.offsets
	s.Unserved, s.UnservedNote = w.verdict.Unserved, w.verdict.note()
	w.mu.Unlock()
	for _, p := range w.consumer.Status().Partitions {
		ps := PartitionStatus{Topic: p.Topic, Partition: p.Partition, Committed: -1, Pending: p.Pending}
		if o, ok := offsets[p.Topic]; ok && o.End != nil {
			ps.Committed, ps.Lag = o.Committed[p.Partition], o.Lag(p.Partition)
		}
		s.Partitions = append(s.Partitions, ps) // in topic, partition order (consumer.Status)
	}
	return s
}

// statusSample reads what the status page charts, from the metrics (one
// gathering of the registry).
func (w *Worker) statusSample() admin.Sample {
	fams, _ := w.reg.Gather()
	g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, nil })
	_, settled := telemetry.Sum(g, "cxbridge_records_settled_total", "result")
	dead, _ := telemetry.Sum(g, "cxbridge_dead_letters_total", "")
	lag, _ := telemetry.Sum(g, "cxbridge_consumer_lag", "")
	return admin.Sample{Accepted: settled["accepted"], DeadLetters: dead, Lag: lag, InFlight: float64(w.disp.InFlight())}
}
