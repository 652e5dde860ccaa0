// Package chaos is cxbridge's fault-injection suite on real processes: the
// `cxbridge` binary runs as a broker process (the embedded Kafka-protocol
// broker with its data on disk, so that it can be killed and started again
// on it), a CXone simulator process, one to three worker processes — with
// the shipped settings: only where the broker, the group, CXone and the
// admin server are is given — and a
// `cxbridge produce` process; the harness injects one kind of fault per
// scenario and checks every outcome from the outside — the simulator's
// record of accepted correlation ids, the DLQ topic, the group's committed
// offsets, the processes' exit codes and every line they logged.
//
// Each scenario produces its records with 1 % bad ones (every kind in
// turn, each marked with the produce.BadHeader header naming its kind) and
// then checks that:
//
//   - every good record was accepted by the simulator (lost = 0), and no
//     other correlation id was;
//   - the DLQ holds exactly the bad records — each one's original
//     coordinates, with the reason its kind must get;
//   - the group committed every end offset;
//   - no secret (the client secret, any issued token, an Authorization
//     header) appears in any process's output.
//
// Duplicates (events accepted more than once, bad records dead-lettered
// more than once) are counted and allowed: delivery is at least once, and
// a worker that dies or loses its group generation between publishing and
// committing sees its records again. Times to recover are measured from the end of
// each fault: "resumed" until the simulator accepts again, "caught up"
// until the group's lag is back to where it was before the fault.
//
// The kill scenarios (2 and 3 workers) kill a worker with SIGKILL and start
// it again a second later, several times, each once the group is whole
// again — every worker a member of a newer generation, every partition
// held, the simulator accepting — while records keep coming. For each kill
// they measure "frozen", the longest time from the kill on during which
// the simulator accepted nothing (no worker published), and check it is at
// most KillBound (10 s).
//
// The kill-9-join scenario (2 workers) kills a worker, starts it again a
// second later, kills the new process as soon as the coordinator has
// accepted its join and while that join is pending, and starts it once
// more: the generation that completes then holds a dead member. It checks
// that the group is whole again within JoinKillHeal (150 s) — the
// embedded broker never expires such a member, at random, and the workers
// must notice and rejoin — and everything else every scenario checks.
//
// The reduced size runs in `make test` (TestChaos); the full size
// (100,000 records a scenario) runs with
//
//	go test -run TestChaos -timeout 90m -v ./internal/chaos/ -args -chaos.size=full -chaos.report=chaos.md
//
// which `make chaos` does; the report is the table of docs/RELIABILITY.md.
//
// The harness is test code: it lives in the package's _test.go files, so
// that nothing of it is compiled into a package the binary could import.
package chaos
