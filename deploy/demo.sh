#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: a local Kafka, the Keap sandbox
# with a live order generator, the poller on deploy/examples/
# infusionsoft-instance.json, and the events as they arrive, until Ctrl-C.
# Everything it starts, it stops (Kafka only if it was not already running).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${DEMO_SANDBOX_PORT:-18089}   # must match base.url in the example instance
run_id=$(date +%s)
logs=.cache/demo
mkdir -p "$logs"
pids=()
started_kafka=0

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "demo: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$started_kafka" = 1 ]; then deploy/kafka/kafka.sh down; fi
  echo "demo: logs in $logs/"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

cargo build --quiet --workspace --bins
bin=${CARGO_TARGET_DIR:-target}/debug

if deploy/kafka/kafka.sh status 2>/dev/null; then
  echo "demo: using the Kafka already running"
else
  deploy/kafka/kafka.sh up
  started_kafka=1
fi

"$bin"/keap-sandbox --listen "127.0.0.1:$port" --seed 7 --orders 5 \
  --create-rate 0.4 --update-rate 0.6 \
  --client-id demo-client --client-secret demo-secret \
  --authorization-code demo-authorization-code --access-token-ttl 60 \
  > "$logs/sandbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q '^listening on' "$logs/sandbox.log" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$logs/sandbox.log" >&2; exit 1; }
  sleep 0.1
done
echo "demo: sandbox $(head -n 1 "$logs/sandbox.log")"

export EVENTS_TOPIC="demo-$run_id.events" STATE_TOPIC="demo-$run_id.state" DLQ_TOPIC="demo-$run_id.dlq"
export TOPIC_PARTITIONS=3 INSTANCES_PATH=deploy/examples/infusionsoft-instance.json
export WORKER_GROUP_ID="demo-$run_id" OPS_LISTEN=127.0.0.1:0
# A demo-only key: real deployments pass their own (see README).
export STATE_ENCRYPTION_KEY=ZGVtby1rZXktZGVtby1rZXktZGVtby1rZXktMDAwMDA=
"$bin"/event-poller run > "$logs/poller.log" 2>&1 &
pids+=($!)
echo "demo: poller running (log: $logs/poller.log); events on $EVENTS_TOPIC as they commit:"
echo "demo: the sandbox creates and updates orders every few seconds; Ctrl-C stops everything"

# Wait for the poller to create the topic, then follow it.
for _ in $(seq 1 100); do
  "$bin"/event-poller tail --topic "$EVENTS_TOPIC" --from-beginning --exit-at-end >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { tail -n 20 "$logs/poller.log" >&2; exit 1; }
  sleep 0.2
done
"$bin"/event-poller tail --topic "$EVENTS_TOPIC" --from-beginning &
pids+=($!)
wait "${pids[2]}"
