#!/usr/bin/env bash
# What one worker costs per owned state partition: it owns every partition
# of a state topic of P partitions (default "6 64 256"), with 64 OAuth
# instances at a 5 s interval, against the local Kafka (`make kafka-up`)
# and the sandbox. For each P: seconds until /readyz is 200, then after a
# 30 s window after every job polled once: peak RSS, threads, transactions/s and lane wait. Release
# build. Prints one line per P; the times count from the worker's start.
#   benches/partitions.sh [P ...]
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${*:-6 64 256}
instances=64
cargo build --quiet --release --workspace --bins
bin=target/release
deploy/kafka/kafka.sh status >/dev/null
logs=.cache/bench-partitions
mkdir -p "$logs"

metric() { # sum of a metric's samples (name prefix match on the whole name)
  curl -sf "http://$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END {print s + 0}'
}

sandbox=""
worker=""
trap 'kill ${sandbox:-} ${worker:-} 2>/dev/null || true' EXIT
for p in $sizes; do
  # A sandbox per size: authorization codes are single-use.
  codes=()
  for i in $(seq 0 $((instances - 1))); do codes+=(--authorization-code "code-$i"); done
  "$bin"/keap-sandbox --listen 127.0.0.1:0 --client-id bench --client-secret bench-secret \
    --throttle-per-minute 100000000 --quota-per-day 100000000 "${codes[@]}" \
    > "$logs/sandbox.out" 2> "$logs/sandbox.log" &
  sandbox=$!
  base=""
  for _ in $(seq 1 100); do
    base=$(sed -n 's/^listening on //p' "$logs/sandbox.out" 2>/dev/null | head -1)
    [ -n "$base" ] && break; sleep 0.1
  done
  dir=$(mktemp -d)
  for i in $(seq 0 $((instances - 1))); do
    cat > "$dir/shop-$i.json" <<JSON
{"element": {"key": "infusionsoftecommerce"}, "providerData": {"code": "code-$i"}, "name": "shop-$i",
 "configuration": {"base.url": "$base/crm/rest", "oauth.api.key": "bench", "oauth.api.secret": "bench-secret",
  "oauth.callback.url": "https://example.test/cb", "event.notification.enabled": "true",
  "event.poller.refresh_interval_seconds": "5",
  "event.poller.configuration": {"orders": {"url": "/hubs/ecommerce/orders?where=since='\${date:yyyy-MM-dd'T'HH:mm:ssXXX}' ",
   "idField": "id", "datesConfiguration": {
   "updatedAtField": "modification_date", "updatedAtFormat": "yyyy-MM-dd'T'HH:mm:ssXXX",
   "createdAtField": "creation_date", "createdAtFormat": "yyyy-MM-dd'T'HH:mm:ssXXX"}}}}}
JSON
  done
  run="parts-$p-$(date +%s)"
  port=$((19100 + RANDOM % 500))
  EVENTS_TOPIC="$run.events" STATE_TOPIC="$run.state" DLQ_TOPIC="$run.dlq" WORKER_GROUP_ID="$run" \
    TOPIC_PARTITIONS=$p INSTANCES_PATH="$dir" OPS_LISTEN="127.0.0.1:$port" LOG_FORMAT=json \
    STATE_ENCRYPTION_KEY=ZGVtby1rZXktZGVtby1rZXktZGVtby1rZXktMDAwMDA= \
    "$bin"/event-poller run > /dev/null 2> "$logs/worker-$p.log" &
  worker=$!
  start=$(date +%s.%N)
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 $worker || { echo "worker died: $logs/worker-$p.log" >&2; exit 1; }
    sleep 0.2
  done
  ready=$(echo "$(date +%s.%N) - $start" | bc)
  # Every job polled once (partitions without jobs are not restored).
  for _ in $(seq 1 600); do
    [ "$(grep -c 'Poll committed' "$logs/worker-$p.log" || true)" -ge "$instances" ] && break
    sleep 0.2
  done
  restored=$(echo "$(date +%s.%N) - $start" | bc)
  t0=$(metric "127.0.0.1:$port" event_poller_transactions_total)
  sleep 30
  t1=$(metric "127.0.0.1:$port" event_poller_transactions_total)
  waits=$(metric "127.0.0.1:$port" event_poller_lane_wait_seconds_sum)
  turns=$(metric "127.0.0.1:$port" event_poller_lane_wait_seconds_count)
  rss=$(awk '/VmHWM/ {print $2}' /proc/$worker/status)
  threads=$(awk '/Threads/ {print $2}' /proc/$worker/status)
  kill -TERM $worker; wait $worker || true
  worker=""
  kill $sandbox; wait $sandbox 2>/dev/null || true
  sandbox=""
  printf 'partitions %4d: ready %5.1f s, all polled %5.1f s, peak RSS %6.1f MiB, threads %4d, transactions %5.1f/s, mean lane wait %5.1f ms\n' \
    "$p" "$ready" "$restored" "$(echo "$rss / 1024" | bc -l)" "$threads" "$(echo "($t1 - $t0) / 30" | bc -l)" \
    "$(echo "1000 * $waits / ($turns + 0.000001)" | bc -l)"
  rm -rf "$dir"
done
