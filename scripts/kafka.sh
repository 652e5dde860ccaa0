#!/usr/bin/env bash
# A real Apache Kafka broker for the real-broker test tier: one KRaft node
# (broker + controller in one JVM), its data in a directory of your choice,
# so that it can be killed and started again on it.
#
#   scripts/kafka.sh fetch                  # the jars, once, into the cache (Maven Central)
#   scripts/kafka.sh start DIR [options]    # format DIR if new, start, wait until it answers metadata
#   scripts/kafka.sh stop DIR               # SIGTERM, wait for the exit
#   scripts/kafka.sh kill DIR               # SIGKILL (a crash): no clean shutdown
#   scripts/kafka.sh restart DIR            # start again on DIR's data, same ports and options
#   scripts/kafka.sh env DIR                # the listeners' addresses, as shell assignments
#
# start options:
#   --port N      the plaintext listener's port (default: a free one)
#   --sasl        add a SASL_PLAINTEXT listener with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN
#                 (users cxbridge / cxbridge-secret for every mechanism)
#   --tls         add an SSL listener whose certificate is signed by a fresh private CA
#                 (DIR/tls/ca.pem is what clients trust); with --sasl, a SASL_SSL one too
#   --heap SIZE   the JVM heap (default 512m)
#
# After start, DIR/kafka.env holds KAFKA_BROKERS (plaintext), and with the
# options KAFKA_SASL_BROKERS, KAFKA_TLS_BROKERS, KAFKA_SASL_TLS_BROKERS,
# KAFKA_TLS_CA, KAFKA_SASL_USER and KAFKA_SASL_PASSWORD; the broker logs to
# DIR/broker.log.
#
# Needs Java 17+ and, to fetch the jars the first time, Maven. The jars are
# kept in $CXBRIDGE_KAFKA_CACHE (default ~/.cache/cxbridge/kafka-<version>),
# outside the repository; the version is pinned in scripts/kafka/pom.xml.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
pom="$here/kafka/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
cache="${CXBRIDGE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cxbridge/kafka-$version}"
GO="${GO:-go}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_java() {
	command -v java >/dev/null || die "java not found: the real-broker tier needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
	local v
	v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
	[ -n "$v" ] && [ "$v" -ge 17 ] || die "java $v found: Apache Kafka $version needs Java 17 or newer"
}

fetch() {
	if [ -f "$cache/libs/.complete" ]; then
		return
	fi
	command -v mvn >/dev/null || die "mvn not found: Maven fetches Apache Kafka $version's jars the first time (Debian: apt-get install maven), or put them in $cache/libs"
	echo "kafka.sh: fetching Apache Kafka $version into $cache/libs" >&2
	rm -rf "$cache/libs.tmp"
	mkdir -p "$cache"
	mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache/libs.tmp" >&2 ||
		die "fetching Apache Kafka $version with Maven failed (see above)"
	rm -rf "$cache/libs"
	mv "$cache/libs.tmp" "$cache/libs"
	touch "$cache/libs/.complete"
}

kafka_java() { # runs a Kafka main class
	java -cp "$cache/libs/*" "$@"
}

free_port() {
	"$GO" run "$root/scripts/kafkatool" port
}

# write_config DIR: server.properties from DIR/options (sourced).
write_config() {
	local dir="$1"
	# shellcheck disable=SC1091
	. "$dir/options"
	local listeners="PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
	local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
	[ -n "${SASL_PORT:-}" ] && listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT" && protocols="$protocols,SASL_PLAINTEXT:SASL_PLAINTEXT"
	[ -n "${TLS_PORT:-}" ] && listeners="$listeners,SSL://127.0.0.1:$TLS_PORT" && protocols="$protocols,SSL:SSL"
	[ -n "${SASL_TLS_PORT:-}" ] && listeners="$listeners,SASL_SSL://127.0.0.1:$SASL_TLS_PORT" && protocols="$protocols,SASL_SSL:SASL_SSL"
	cat >"$dir/server.properties" <<EOF
# written by scripts/kafka.sh
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=${listeners/,CONTROLLER:\/\/127.0.0.1:$CONTROLLER_PORT/}
listener.security.protocol.map=$protocols
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Topics are created by the tests with the partitions they need.
auto.create.topics.enable=false
num.partitions=6
# A new, empty group starts at once instead of after Kafka's default 3 s,
# so that a test's first join costs no fixed delay; every other group
# setting (group.min.session.timeout.ms 6 s among them) is Kafka's default.
group.initial.rebalance.delay.ms=0
EOF
	if [ -n "${SASL_PORT:-}" ]; then
		echo "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512" >>"$dir/server.properties"
		local l
		for l in sasl_plaintext ${SASL_TLS_PORT:+sasl_ssl}; do
			cat >>"$dir/server.properties" <<EOF
listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SASL_USER" password="$SASL_PASSWORD" user_$SASL_USER="$SASL_PASSWORD";
listener.name.$l.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.$l.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
		done
	fi
	if [ -n "${TLS_PORT:-}" ]; then
		cat >>"$dir/server.properties" <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/keystore.pem
ssl.client.auth=none
EOF
	fi
	cat >"$dir/log4j2.yaml" <<EOF
Configuration:
  Appenders:
    File:
      name: file
      fileName: "$dir/broker.log"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: file
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
EOF
}

write_env() {
	local dir="$1"
	# shellcheck disable=SC1091
	. "$dir/options"
	{
		echo "KAFKA_BROKERS=127.0.0.1:$PORT"
		if [ -n "${SASL_PORT:-}" ]; then
			echo "KAFKA_SASL_BROKERS=127.0.0.1:$SASL_PORT"
			echo "KAFKA_SASL_USER=$SASL_USER"
			echo "KAFKA_SASL_PASSWORD=$SASL_PASSWORD"
		fi
		if [ -n "${TLS_PORT:-}" ]; then
			echo "KAFKA_TLS_BROKERS=127.0.0.1:$TLS_PORT"
			echo "KAFKA_TLS_CA=$dir/tls/ca.pem"
		fi
		if [ -n "${SASL_TLS_PORT:-}" ]; then
			echo "KAFKA_SASL_TLS_BROKERS=127.0.0.1:$SASL_TLS_PORT"
		fi
	} >"$dir/kafka.env"
}

running() { # running DIR: the broker of DIR is alive
	[ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null
}

launch() {
	local dir="$1"
	# shellcheck disable=SC1091
	. "$dir/options"
	running "$dir" && die "a broker already runs on $dir (pid $(cat "$dir/pid"))"
	: >>"$dir/broker.log"
	# setsid: the broker is not in the caller's process group, so that a
	# test's Ctrl-C or kill of its group does not take it down mid-check.
	setsid java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$dir/log4j2.yaml" \
		-cp "$cache/libs/*" kafka.Kafka "$dir/server.properties" >>"$dir/broker.out" 2>&1 </dev/null &
	echo $! >"$dir/pid"
	if ! "$GO" run "$root/scripts/kafkatool" wait -timeout "${KAFKA_START_TIMEOUT:-90s}" -pid "$(cat "$dir/pid")" "127.0.0.1:$PORT"; then
		tail -n 30 "$dir/broker.out" "$dir/broker.log" >&2 || true
		die "the broker on $dir did not answer metadata (logs: $dir/broker.log, $dir/broker.out)"
	fi
	write_env "$dir"
}

start() {
	local dir="" port="" sasl="" tls="" heap="512m"
	while [ $# -gt 0 ]; do
		case "$1" in
		--port) port="$2"; shift 2 ;;
		--sasl) sasl=1; shift ;;
		--tls) tls=1; shift ;;
		--heap) heap="$2"; shift 2 ;;
		-*) die "start: unknown option $1" ;;
		*) [ -z "$dir" ] || die "start: one directory only"; dir="$1"; shift ;;
		esac
	done
	[ -n "$dir" ] || die "start: the data directory is required"
	need_java
	fetch
	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
	if [ ! -f "$dir/options" ]; then
		{
			echo "PORT=${port:-$(free_port)}"
			echo "CONTROLLER_PORT=$(free_port)"
			echo "HEAP=$heap"
			if [ -n "$sasl" ]; then
				echo "SASL_PORT=$(free_port)"
				echo "SASL_USER=cxbridge"
				echo "SASL_PASSWORD=cxbridge-secret"
			fi
			[ -n "$tls" ] && echo "TLS_PORT=$(free_port)"
			[ -n "$tls" ] && [ -n "$sasl" ] && echo "SASL_TLS_PORT=$(free_port)"
		} >"$dir/options"
		if [ -n "$tls" ]; then
			"$GO" run "$root/scripts/kafkatool" certs "$dir/tls"
			cat "$dir/tls/key.pem" "$dir/tls/cert.pem" >"$dir/tls/keystore.pem"
		fi
		write_config "$dir"
		# shellcheck disable=SC1091
		. "$dir/options"
		local scram=()
		if [ -n "$sasl" ]; then
			scram=(--add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]"
				--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]")
		fi
		kafka_java -Dlog4j2.configurationFile="$dir/log4j2.yaml" kafka.tools.StorageTool format \
			--config "$dir/server.properties" --cluster-id "$(kafka_java kafka.tools.StorageTool random-uuid)" \
			--standalone "${scram[@]}" >"$dir/format.out" 2>&1 ||
			{ cat "$dir/format.out" >&2; die "formatting $dir failed"; }
	fi
	launch "$dir"
	cat "$dir/kafka.env"
}

stop() { # stop DIR SIGNAL
	local dir="$1" sig="$2"
	[ -f "$dir/pid" ] || die "no broker was started on $dir"
	local pid
	pid="$(cat "$dir/pid")"
	if kill -0 "$pid" 2>/dev/null; then
		kill -"$sig" "$pid"
		for _ in $(seq 1 600); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; echo "kafka.sh: the broker did not stop within 60 s: killed" >&2; }
	fi
	rm -f "$dir/pid"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
fetch) need_java; fetch; echo "$cache/libs" ;;
start) start "$@" ;;
stop) [ $# -eq 1 ] || die "stop DIR"; stop "$1" TERM ;;
kill) [ $# -eq 1 ] || die "kill DIR"; stop "$1" KILL ;;
restart)
	[ $# -eq 1 ] || die "restart DIR"
	[ -f "$1/options" ] || die "restart: $1 holds no broker (start it first)"
	need_java; fetch; launch "$(cd "$1" && pwd)"; cat "$1/kafka.env" ;;
env) [ $# -eq 1 ] || die "env DIR"; cat "$1/kafka.env" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
