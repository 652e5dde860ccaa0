#!/usr/bin/env bash
# The real-broker test tier (`make test-kafka`): runs the suites that use a
# broker against an Apache Kafka broker that scripts/with-kafka.sh starts
# (plaintext, SASL and TLS listeners, a fresh data directory) and stops.
#
#   scripts/test-kafka.sh                  # every suite below
#   scripts/test-kafka.sh ./internal/itest # only these packages
#   TESTFLAGS='-run TestPipeline -v' scripts/test-kafka.sh ./internal/itest
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"

if [ $# -gt 0 ]; then
	# shellcheck disable=SC2086
	exec bash scripts/with-kafka.sh "$GO" test -race -count=1 -timeout 30m ${TESTFLAGS:-} "$@"
fi
# The integration and process tests, then the chaos suite alone: it kills
# and restarts the broker, which the others must not see.
exec bash scripts/with-kafka.sh bash -c '
	set -euo pipefail
	"$0" test -race -count=1 -timeout 30m ${TESTFLAGS:-} ./internal/itest/ ./cmd/cxbridge/
	"$0" test -race -count=1 -timeout 30m ${TESTFLAGS:-} -run "^TestChaos$" ./internal/chaos/
' "$GO"
