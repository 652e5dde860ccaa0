#!/usr/bin/env bash
# Renders the worker's status page in headless Chromium (Debian's package)
# against `cxbridge dev`, and checks what a person would see: the page is
# ready, shows partitions, the breaker and accepted events, and its four
# charts of the last 10 minutes are drawn from /history.json (accepted/s
# above zero once events flowed), with no JavaScript error on the console.
# Saves screenshots to bin/status-page.png and bin/status-page-narrow.png.
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

# await fails after $1 seconds unless the command that follows succeeds.
await() {
  local what=$1 limit=$2 deadline=$((SECONDS + $2)); shift 2
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "FAIL: no $what within ${limit}s; worker log:"; tail -n 30 bin/browser-dev.log; exit 1
    fi
    sleep 0.5
  done
}
ready() { curl -fs "http://$admin/readyz" >/dev/null 2>&1; }
# Two points or more (a line), and one above zero in accepted_per_second.
charted() {
  local h
  h=$(curl -fs "http://$admin/history.json" 2>/dev/null) || return 1
  grep -Eq '"time_ms":\[[0-9]+,[0-9]+' <<<"$h" && grep -Eq '"accepted_per_second":\[[^]]*[1-9]' <<<"$h"
}
await "ready worker" 60 ready
await "accepted events in /history.json" 60 charted

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --virtual-time-budget=5000)
console=$(mktemp)
dom=$(chromium "${flags[@]}" --enable-logging=stderr --v=0 --dump-dom "http://$admin/" 2>"$console")
chromium "${flags[@]}" --window-size=1200,900 --screenshot=bin/status-page.png "http://$admin/" >/dev/null 2>&1 || true
chromium "${flags[@]}" --window-size=390,1600 --screenshot=bin/status-page-narrow.png "http://$admin/" >/dev/null 2>&1 || true
fail=0
check() { if grep -q "$1" <<<"$dom"; then echo "ok: $2"; else echo "FAIL: $2"; fail=1; fi; }
check 'class="big ok" id="ready">ready<' "the page says ready"
check 'class="big ok" id="breaker">closed<' "the breaker is closed"
check '<th>partition</th>' "the partition table is drawn"
check '<td class="n">5</td>' "partition 5 is listed"
check 'accepted</td><td class="n">[1-9]' "accepted events are counted"
# chart ID: the points of the chart's line; the line has 2 points or more,
# and for accepted/s one above the baseline (y < the height, 64: not zero).
for c in accepted dead lag inflight; do
  pts=$(grep -oP "id=\"chart-$c\".*?<polyline[^>]*points=\"\\K[^\"]*" <<<"$dom" || true)
  read -r n above < <(tr ' ' '\n' <<<"$pts" | awk -F, 'NF == 2 { n++; if ($2 + 0 < 64) a++ } END { print n + 0, a + 0 }')
  if ((n >= 2)); then echo "ok: the $c chart is drawn ($n points, $above above zero)"; else echo "FAIL: the $c chart has $n points"; fail=1; fi
  if [ "$c" = accepted ] && ((above == 0)); then echo "FAIL: the accepted/s chart shows no accepted events"; fail=1; fi
done
if grep -E 'CONSOLE|Uncaught' "$console" | grep -Eqi 'error|uncaught'; then
  echo "FAIL: JavaScript errors on the console:"; grep -E 'CONSOLE|Uncaught' "$console"; fail=1
else
  echo "ok: no JavaScript error on the console"
fi
if [ $fail -ne 0 ]; then echo "--- DOM:"; echo "$dom" | head -c 6000; exit 1; fi
echo "status page OK; screenshots in bin/status-page.png and bin/status-page-narrow.png"
