package dlq

import "github.com/segmentio/kafka-go"

// JavaPartition returns the partition that Kafka's Java producer puts a record
// with this key in when the topic has n partitions and the producer uses its
// default partitioner: toPositive(murmur2(key)) % n. It is the partitioner of
// kafka-go's Murmur2Balancer, which ports the Java murmur2 (and agrees with
// librdkafka's "murmur2" and "murmur2_random"); for a non-nil key its
// Consistent setting makes no difference. A nil key has no fixed partition
// (the Java producer spreads such records), so key must not be nil; an empty
// key is a key like any other.
func JavaPartition(key []byte, n int) int {
	if n <= 0 {
		panic("dlq: JavaPartition needs at least one partition")
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return kafka.Murmur2Balancer{}.Balance(kafka.Message{Key: key}, parts...)
}

// Placement decides which partition of the target topic a replayed record
// goes to, so that it sits with the records of the same key the way the
// original producer placed them.
//
// While the target topic has as many partitions as it had when the record
// was dead-lettered, the record goes back to its original partition: that is
// where its producer's partitioner, whatever it is, put its key. Once the
// count changed, the original partition no longer holds the key's newer
// records, and the record goes where Kafka's default (Java) partitioner puts
// its key at the current count (JavaPartition). A record without a key has no
// key order to keep: it goes to its original partition while that exists.
//
// A DLQ record does not carry the partition count it was written under.
// Kafka never shrinks a topic, so an original partition at or beyond the
// current count proves a change (the topic was re-created); an increase
// leaves no trace in the record, and Then says what the count was (the
// operator knows when partitions were added). Then 0 means the count is
// taken as unchanged.
type Placement struct {
	Now  int // the target topic's current partition count
	Then int // its count when the records were dead-lettered; 0: as Now
}

// How a Placement chose a partition.
const (
	PlacedOriginal = "original" // the record's original partition
	PlacedMurmur2  = "murmur2"  // JavaPartition of its key at the current count
	PlacedNoKey    = "no key"   // no key and the original partition is gone: original % count
)

// Partition returns the target partition of a record with this key that was
// dead-lettered from original partition orig, and how it was chosen.
func (pl Placement) Partition(key []byte, orig int) (int, string) {
	changed := pl.Then > 0 && pl.Then != pl.Now || orig < 0 || orig >= pl.Now
	switch {
	case !changed:
		return orig, PlacedOriginal
	case key != nil:
		return JavaPartition(key, pl.Now), PlacedMurmur2
	case orig >= 0 && orig < pl.Now:
		return orig, PlacedOriginal
	default:
		return max(orig, 0) % pl.Now, PlacedNoKey
	}
}
