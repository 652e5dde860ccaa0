// Package bench holds cxbridge's end-to-end benchmarks: the embedded broker
// and the CXone simulator run in the benchmark process, the worker runs as a
// separate `cxbridge run` process (built once by TestMain), so that its own
// CPU time comes from its rusage after it exits and its peak RSS from the
// kernel's high-water mark of its memory.
//
// Each case writes a backlog of records of about 1 KB to 6 partitions,
// starts a worker and times it until every offset is committed
// (throughput, worker CPU seconds per 1000 events, worker peak RSS); then a
// second worker of the same group serves a short steady load at a fixed rate
// well under capacity, for the end-to-end latency (record timestamp to
// acceptance by the simulator).
//
// Run it with:
//
//	go test -run '^$' -bench . -benchtime 1x -count 3 -timeout 60m ./internal/bench/
//
// and take the medians over -count (benchstat does). Flags after -args:
// -e2e.records (100000), -e2e.slow-records (5000, ordering=partition at
// 20 ms), -e2e.steady (10s; 0 skips the latency phase), -e2e.max-in-flight (256),
// -e2e.worker-log.
//
// Every figure here is CPU-bound: the broker, the simulator and the worker
// share the machine, so on a shared machine read them with the load
// average each case reports. The worker's peak RSS is its VmHWM, not the
// ru_maxrss of its rusage: os/exec starts children with vfork, and Linux
// counts the parent's RSS high-water mark into the child's ru_maxrss.
//
// BenchmarkQuota (quota_test.go) runs several workers of one group against
// a CXone quota (the simulator's rate-limit fault) with a backlog beyond
// it, and reports the share of the quota accepted and of requests answered
// 429:
//
//	go test -run '^$' -bench Quota -benchtime 1x -count 5 -timeout 60m ./internal/bench/
//
// (-quota.workers, -quota.rate, -quota.backlog, -quota.rate-limit,
// -quota.warmup; -e2e.binary measures another build, main's say, the same
// way.)
//
// The package has no tests: without -bench, TestMain does not build the
// binary.
package bench
