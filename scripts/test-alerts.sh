#!/usr/bin/env bash
# `make test-alerts`: promtool checks the alert rules and runs their unit
# tests, for the compose stack's rules (deploy/prometheus/alerts.yml) and for
# the PrometheusRule's (deploy/k8s/prometheusrule.yaml, its groups written to
# a scratch rule file). promtool comes from Debian's prometheus package,
# installed here when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"

if ! command -v promtool >/dev/null; then
	echo "promtool not found: installing Debian's prometheus package" >&2
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
		echo "test-alerts: promtool is needed (Debian: apt-get install prometheus)" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
	# The package's service is not wanted; on a machine without systemd it does not start.
fi
promtool --version | head -1

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "== deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts.test.yml)

echo "== deploy/k8s/prometheusrule.yaml"
"$GO" run ./scripts/promrule deploy/k8s/prometheusrule.yaml >"$scratch/alerts.yml"
cp deploy/prometheus/alerts.test.yml deploy/prometheus/k8s-alerts.test.yml "$scratch/"
promtool check rules "$scratch/alerts.yml"
(cd "$scratch" && promtool test rules alerts.test.yml k8s-alerts.test.yml)
