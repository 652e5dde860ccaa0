#!/usr/bin/env bash
# Renders the worker's status page in headless Chromium (Debian's package)
# against `cxbridge dev`, and checks what a person would see: the page is
# ready, shows partitions, the breaker and accepted events. Saves a
# screenshot to bin/status-page.png.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  echo "installing Debian's chromium…"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
make -s build
admin=127.0.0.1:18090
./bin/cxbridge dev --broker-addr 127.0.0.1:19092 --sim-addr 127.0.0.1:18081 --admin-addr "$admin" \
  --summary-every 1h >bin/browser-dev.log 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://$admin/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
sleep 4 # two refreshes of the page's data, and some events through
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --virtual-time-budget=5000)
dom=$(chromium "${flags[@]}" --dump-dom "http://$admin/" 2>/dev/null)
chromium "${flags[@]}" --window-size=1200,900 --screenshot=bin/status-page.png "http://$admin/" >/dev/null 2>&1 || true
fail=0
check() { if grep -q "$1" <<<"$dom"; then echo "ok: $2"; else echo "FAIL: $2"; fail=1; fi; }
check 'class="big ok" id="ready">ready<' "the page says ready"
check 'class="big ok" id="breaker">closed<' "the breaker is closed"
check '<th>partition</th>' "the partition table is drawn"
check '<td class="n">5</td>' "partition 5 is listed"
check 'accepted</td><td class="n">[1-9]' "accepted events are counted"
if [ $fail -ne 0 ]; then echo "--- DOM:"; echo "$dom" | head -c 4000; exit 1; fi
echo "status page OK; screenshot in bin/status-page.png"
