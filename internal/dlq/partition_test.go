package dlq

import (
	"fmt"
	"testing"
)

// JavaPartition matches Kafka's Java default partitioner.
//
// The hashes are Kafka's own murmur2 test vectors (UtilsTest.testMurmur2 in
// apache/kafka's clients module; franz-go's kgo carries the same table in
// TestMurmur2KafkaVectors): Java's Utils.murmur2 as a signed int. The Java
// partitioner's partition is toPositive(hash) % n, toPositive being
// hash & 0x7fffffff.
//
// The partitions at 1000 partitions are kafka-python's Murmur2Partitioner
// test table (test/test_partitioner.py), which kafka-go's balancer tests
// carry too.
func TestJavaPartition(t *testing.T) {
	kafkaHashes := []struct {
		key  string
		hash int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, v := range kafkaHashes {
		for _, n := range []int{1, 2, 3, 6, 12, 100, 1000} {
			want := int(uint32(v.hash)&0x7fffffff) % n
			if got := JavaPartition([]byte(v.key), n); got != want {
				t.Errorf("JavaPartition(%q, %d) = %d, want %d (Java hash %d)", v.key, n, got, want, v.hash)
			}
		}
	}

	python := []struct {
		key  []byte
		want int
	}{
		{[]byte(""), 681},
		{[]byte("a"), 524},
		{[]byte("ab"), 434},
		{[]byte("abc"), 107},
		{[]byte("123456789"), 566},
		{[]byte{0, 32}, 742},
	}
	for _, v := range python {
		if got := JavaPartition(v.key, 1000); got != v.want {
			t.Errorf("JavaPartition(%q, 1000) = %d, want %d", v.key, got, v.want)
		}
	}
}

func TestPlacement(t *testing.T) {
	key := []byte("foobar") // Java: partition 1357151166 % n
	cases := []struct {
		pl        Placement
		key       []byte
		orig      int
		want      int
		wantHow   string
		situation string
	}{
		{Placement{Now: 6}, key, 4, 4, PlacedOriginal, "count unknown, original exists: taken as unchanged"},
		{Placement{Now: 6, Then: 6}, key, 4, 4, PlacedOriginal, "count unchanged"},
		{Placement{Now: 6, Then: 3}, key, 2, 1357151166 % 6, PlacedMurmur2, "partitions added"},
		{Placement{Now: 3}, key, 5, 1357151166 % 3, PlacedMurmur2, "original partition gone: topic re-created smaller"},
		{Placement{Now: 6, Then: 3}, nil, 2, 2, PlacedOriginal, "no key, original exists"},
		{Placement{Now: 3}, nil, 5, 2, PlacedNoKey, "no key, original gone"},
		{Placement{Now: 6, Then: 3}, []byte{}, 0, 275646681 % 6, PlacedMurmur2, "an empty key is a key"},
	}
	for _, c := range cases {
		t.Run(c.situation, func(t *testing.T) {
			got, how := c.pl.Partition(c.key, c.orig)
			if got != c.want || how != c.wantHow {
				t.Errorf("%+v.Partition(%q, %d) = %d, %s; want %d, %s", c.pl, c.key, c.orig, got, how, c.want, c.wantHow)
			}
		})
	}
}

func ExampleJavaPartition() {
	fmt.Println(JavaPartition([]byte("foobar"), 12))
	// Output: 6
}
