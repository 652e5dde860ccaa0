package consumer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"
)

// clientAPI is a request kafka-go's consumer group sends at fixed versions
// (the rest of the worker's requests negotiate theirs with the broker).
type clientAPI struct {
	name     string
	key      int16
	min, max int16 // the versions kafka-go can send it at
}

// groupAPIs are the requests of kafka-go v0.4.51's consumer group and the
// versions it sends (conn.go): a broker without one of them cannot have
// this worker as a group member, however often it tries.
var groupAPIs = []clientAPI{
	{"Metadata", 3, 1, 6},
	{"OffsetCommit", 8, 2, 2},
	{"OffsetFetch", 9, 1, 1},
	{"FindCoordinator", 10, 0, 0},
	{"JoinGroup", 11, 1, 2},
	{"Heartbeat", 12, 0, 0},
	{"LeaveGroup", 13, 0, 0},
	{"SyncGroup", 14, 0, 0},
}

// errUnsupportedVersion marks a broker that supports none of the versions
// the client sends of some request.
var errUnsupportedVersion = errors.New("unsupported API version")

// checkVersions returns a *KafkaSetupError naming every request of the
// consumer group that broker addr answers at none of the versions the
// client sends, with the versions the broker does support.
func checkVersions(addr string, broker []kafka.ApiVersion) *KafkaSetupError {
	have := make(map[int16]kafka.ApiVersion, len(broker))
	for _, v := range broker {
		have[v.ApiKey] = v
	}
	var missing []string
	for _, api := range groupAPIs {
		v, ok := have[api.key]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s %s (the broker has no %s at all)", api.name, versions(api.min, api.max), api.name))
		case v.MaxVersion < api.min || v.MinVersion > api.max:
			missing = append(missing, fmt.Sprintf("%s %s (the broker supports %s)", api.name, versions(api.min, api.max), versions(v.MinVersion, v.MaxVersion)))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &KafkaSetupError{Broker: addr, Err: errUnsupportedVersion, msg: fmt.Sprintf(
		"kafka: broker %s does not support %s, which the consumer group client (segmentio/kafka-go) sends: "+
			"this broker version cannot have the worker as a group member; run it against a broker that accepts these versions",
		addr, strings.Join(missing, "; "))}
}

func versions(lo, hi int16) string {
	if lo == hi {
		return fmt.Sprintf("v%d", lo)
	}
	return fmt.Sprintf("v%d–v%d", lo, hi)
}
