#!/usr/bin/env bash
# The real-broker test tier (`make test-kafka`): starts an Apache Kafka broker
# with scripts/kafka.sh (plaintext, SASL and TLS listeners) in a fresh data
# directory, runs the suites that use a broker against it, and stops it.
#
#   scripts/test-kafka.sh                  # every suite below
#   scripts/test-kafka.sh ./internal/itest # only these packages
#   TESTFLAGS='-run TestPipeline -v' scripts/test-kafka.sh ./internal/itest
#
# Java 17+ and Maven are installed from Debian's packages when absent (CI);
# the broker's jars are fetched once into the cache scripts/kafka.sh names.
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
	echo "test-kafka: installing Java and Maven (Debian packages)" >&2
	if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/cxbridge-kafka.XXXXXX")"
stop() {
	bash scripts/kafka.sh stop "$dir" >/dev/null 2>&1 || true
	if [ "${KEEP_KAFKA_DIR:-}" = "" ]; then rm -rf "$dir"; else echo "test-kafka: broker data and logs kept in $dir" >&2; fi
}
trap stop EXIT
bash scripts/kafka.sh start "$dir" --sasl --tls >/dev/null
# shellcheck disable=SC1091
. "$dir/kafka.env"
echo "test-kafka: Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml) on $KAFKA_BROKERS (data in $dir)" >&2
export CXBRIDGE_TEST_KAFKA_BROKERS="$KAFKA_BROKERS" CXBRIDGE_TEST_KAFKA_DIR="$dir"

if [ $# -gt 0 ]; then
	# shellcheck disable=SC2086
	"$GO" test -race -count=1 -timeout 30m ${TESTFLAGS:-} "$@"
	exit
fi
# The integration and process tests, then the chaos suite alone: it kills
# and restarts the broker, which the others must not see.
# shellcheck disable=SC2086
"$GO" test -race -count=1 -timeout 30m ${TESTFLAGS:-} ./internal/itest/ ./cmd/cxbridge/
# shellcheck disable=SC2086
"$GO" test -race -count=1 -timeout 30m ${TESTFLAGS:-} -run '^TestChaos$' ./internal/chaos/
