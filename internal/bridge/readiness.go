package bridge

import (
	"fmt"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/cxbridge/cxbridge/internal/cxone"
)

// The /readyz components (see newAdmin): each says whether its part is
// ready and why not, naming the settings to check.

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
		if len(st.MissingTopics) > 0 {
			return false, "not a member of group " + w.s.Kafka.GroupID + ": input topic " + strings.Join(st.MissingTopics, ", ") + " does not exist (create it, or check --kafka-input-topic); waiting for it"
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
