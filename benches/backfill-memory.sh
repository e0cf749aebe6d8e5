#!/usr/bin/env bash
# Peak RSS of one worker backfilling N orders of about 4 KB each (default
# 100,000), against the local Kafka (`make kafka-up`) and the sandbox.
# The orders are created in batches of 1000, ten seconds apart on the
# provider's clock, an hour or less before now; the job backfills from two
# hours ago. Prints the worker's peak RSS (GNU time) and how long the
# backfill took until every event was committed.
#   benches/backfill-memory.sh [N]      (release build: PROFILE=release;
#   another worker binary, e.g. the previous release: POLLER_BIN=path)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
profile=${PROFILE:-debug}
port=${BENCH_SANDBOX_PORT:-18099}
run_id=$(date +%s)
logs=.cache/bench-memory
mkdir -p "$logs"
if [ "$profile" = release ]; then
  cargo build --quiet --release --workspace --bins
else
  cargo build --quiet --workspace --bins
fi
bin=target/$profile
# POLLER_BIN compares another build of the worker (e.g. an older release).
poller=${POLLER_BIN:-$bin/event-poller}
deploy/kafka/kafka.sh status >/dev/null

"$bin"/keap-sandbox --listen "127.0.0.1:$port" --client-id bench --client-secret bench-secret \
  --authorization-code bench-code > "$logs/sandbox.log" 2>&1 &
sandbox=$!
trap 'kill $sandbox 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '^listening on' "$logs/sandbox.log" 2>/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
batches=$(( (n + 999) / 1000 ))
for i in $(seq 1 "$batches"); do
  curl -sf -X PUT "$base/_sandbox/clock" -d "{\"offset_seconds\": -$(( (batches - i + 1) * 10 ))}" >/dev/null
  curl -sf -X POST "$base/_sandbox/orders" -d '{"count": 1000, "notes_bytes": 2600}' >/dev/null
done
curl -sf -X PUT "$base/_sandbox/clock" -d '{"offset_seconds": 0}' >/dev/null

dir=$(mktemp -d)
from=$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)
cat > "$dir/bench.json" <<JSON
{"element": {"key": "infusionsoftecommerce"}, "providerData": {"code": "bench-code"},
 "configuration": {"base.url": "$base/crm/rest", "oauth.api.key": "bench", "oauth.api.secret": "bench-secret",
  "oauth.callback.url": "https://example.test/cb", "event.notification.enabled": "true",
  "event.poller.refresh_interval_seconds": "5", "event.poller.backfill.from": "$from",
  "event.poller.configuration": {"orders": {"url": "/hubs/ecommerce/orders?where=since='\${date:yyyy-MM-dd'T'HH:mm:ssXXX}' ",
   "idField": "id", "pageSize": 1000, "datesConfiguration": {
   "updatedAtField": "modification_date", "updatedAtFormat": "yyyy-MM-dd'T'HH:mm:ssXXX",
   "createdAtField": "creation_date", "createdAtFormat": "yyyy-MM-dd'T'HH:mm:ssXXX"}}}},
 "name": "bench"}
JSON
export EVENTS_TOPIC="bench-$run_id.events" STATE_TOPIC="bench-$run_id.state" DLQ_TOPIC="bench-$run_id.dlq"
export WORKER_GROUP_ID="bench-$run_id" TOPIC_PARTITIONS=3 INSTANCES_PATH="$dir" OPS_LISTEN=127.0.0.1:0
export STATE_ENCRYPTION_KEY=ZGVtby1rZXktZGVtby1rZXktZGVtby1rZXktMDAwMDA= LOG_FORMAT=json
start=$(date +%s.%N)
/usr/bin/time -v "$poller" run > "$logs/poller.out" 2> "$logs/poller.log" &
timer=$!
addr=""
for _ in $(seq 1 300); do
  addr=$(grep -o '"message":"Ops endpoint listening.","address":"[^"]*"' "$logs/poller.log" | sed 's/.*"address":"//; s/"$//' || true)
  [ -n "$addr" ] && break; sleep 0.1
done
while :; do
  got=$(curl -sf "http://$addr/metrics" | awk '/^event_poller_events_total/ {s += $2} END {print s + 0}')
  [ "${got%.*}" -ge "$n" ] && break
  sleep 1
done
end=$(date +%s.%N)
pkill -TERM -P "$timer" event-poller || true
wait "$timer" || true
rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$logs/poller.log")
echo "orders: $n (about 4 KB each: 2600 bytes of notes), in pages of 1000"
echo "backfill: $(echo "$end - $start" | bc) s until $n events were committed ($profile build)"
echo "worker peak RSS: $rss KiB"
rm -rf "$dir"
