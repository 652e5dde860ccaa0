package testkafka

import (
	"bytes"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// RefuseProduce is an embedded-broker fault that answers err, for good, to
// every produce to topic whose records hold marker (the batches as sent:
// marker must be in a record of an uncompressed batch): a record the
// broker refuses forever, beside others it takes.
func RefuseProduce(topic string, marker []byte, err *kerr.Error) kfake.Fault {
	return kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: err, Count: -1,
		When: func(r kmsg.Request) bool {
			for _, tp := range r.(*kmsg.ProduceRequest).Topics {
				for _, p := range tp.Partitions {
					if bytes.Contains(p.Records, marker) {
						return true
					}
				}
			}
			return false
		}}
}
