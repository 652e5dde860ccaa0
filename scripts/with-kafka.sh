#!/usr/bin/env bash
# Runs a command against a real Apache Kafka broker started for it: the
# broker (scripts/kafka.sh: plaintext, SASL and TLS listeners) gets a fresh
# data directory, the command sees CXBRIDGE_TEST_KAFKA_BROKERS and
# CXBRIDGE_TEST_KAFKA_DIR (which the tests take their broker from), and the
# broker is stopped and its directory removed when the command ends.
#
#   scripts/with-kafka.sh go test -run TestPipeline ./internal/itest/
#   make chaos KAFKA=1          # the same, through the Makefile
#   KEEP_KAFKA_DIR=1 ...        # keep the broker's data and logs
#
# Java 17+ and Maven are installed from Debian's packages when absent (CI);
# the broker's jars are fetched once into the cache scripts/kafka.sh names.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
	echo "usage: scripts/with-kafka.sh COMMAND [ARG...]" >&2
	exit 2
fi

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
	echo "with-kafka: installing Java and Maven (Debian packages)" >&2
	if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/cxbridge-kafka.XXXXXX")"
stop() {
	bash scripts/kafka.sh stop "$dir" >/dev/null 2>&1 || true
	if [ "${KEEP_KAFKA_DIR:-}" = "" ]; then rm -rf "$dir"; else echo "with-kafka: broker data and logs kept in $dir" >&2; fi
}
trap stop EXIT
bash scripts/kafka.sh start "$dir" --sasl --tls >/dev/null
# shellcheck disable=SC1091
. "$dir/kafka.env"
echo "with-kafka: Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml) on $KAFKA_BROKERS (data in $dir)" >&2
export CXBRIDGE_TEST_KAFKA_BROKERS="$KAFKA_BROKERS" CXBRIDGE_TEST_KAFKA_DIR="$dir"
"$@"
