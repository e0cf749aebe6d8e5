#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller in one JVM) from
# plain jars fetched through deploy/kafka/pom.xml. No Docker.
#
#   kafka.sh up      fetch jars (once), format fresh storage, start in the
#                    background, return when the broker answers a metadata request
#   kafka.sh down    stop exactly the process `up` started (by PID); idempotent
#   kafka.sh status  exit 0 when our broker runs and answers
#
# Environment: KAFKA_PORT (default 9092; the controller listens on
# KAFKA_PORT+1), KAFKA_CACHE_DIR (default .cache/kafka in the repo),
# KAFKA_HEAP (default 768m).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
port=${KAFKA_PORT:-9092}
controller_port=$((port + 1))
cache=${KAFKA_CACHE_DIR:-$repo/.cache/kafka}
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
libs=$cache/libs-$version
run=$cache/run-$port
pidfile=$run/kafka.pid
log=$run/kafka.log
heap=${KAFKA_HEAP:-768m}

say() { echo "kafka.sh: $*" >&2; }

# The PID in the pid file, if that process is alive and is our broker (a
# recycled PID belonging to something else must never be signalled).
our_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "kafka.Kafka $run/server.properties" || return 1
  echo "$pid"
}

fetch_jars() {
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null || { say "mvn not found (install maven)"; exit 1; }
  say "fetching Apache Kafka $version jars into $libs"
  rm -rf "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs"
  touch "$libs/.complete"
}

java_cmd() {
  java -Xms256m "-Xmx$heap" -XX:+UseSerialGC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$here/log4j2.properties" \
    -cp "$libs/*" "$@"
}

# A metadata request through Kafka's own admin client: the broker is up only
# when it can list topics, not merely when the port accepts connections.
answers() {
  timeout 20 java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$libs/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list \
    >/dev/null 2>&1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

up() {
  if pid=$(our_pid); then
    if answers; then say "already running (pid $pid) on 127.0.0.1:$port; log: $log"; return 0; fi
    say "pid $pid does not answer; restarting it"
    down
  fi
  if port_open; then say "127.0.0.1:$port is taken by another process"; exit 1; fi
  command -v java >/dev/null || { say "java not found (install a JRE 17+)"; exit 1; }
  fetch_jars
  rm -rf "$run"
  mkdir -p "$run/data"
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
    -e "s|@DATA_DIR@|$run/data|g" "$here/server.properties" > "$run/server.properties"
  local cluster_id
  cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid)
  java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$run/server.properties" >> "$log" 2>&1
  local started
  started=$(date +%s)
  # setsid: the broker must outlive this script and not receive the
  # terminal's Ctrl-C meant for a test run.
  setsid bash -c 'exec "$@"' _ java -Xms256m "-Xmx$heap" -XX:+UseSerialGC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$libs/*" \
    kafka.Kafka "$run/server.properties" >> "$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  say "started pid $(cat "$pidfile") on 127.0.0.1:$port; log: $log"
  local deadline=$((started + 120))
  local pid
  pid=$(cat "$pidfile")
  until port_open && answers; do
    # kill -0, not our_pid: until bash has exec'd java the cmdline differs.
    if ! kill -0 "$pid" 2>/dev/null || ! [ -r "/proc/$pid/cmdline" ] || [ -z "$(tr -d '\0' < "/proc/$pid/cmdline")" ]; then say "broker exited during start-up; last log lines:"; tail -n 30 "$log" >&2; exit 1; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then say "broker did not answer within 120 s"; down; exit 1; fi
    sleep 0.5
  done
  say "ready after $(($(date +%s) - started)) s"
}

down() {
  local pid
  if ! pid=$(our_pid); then rm -f "$pidfile"; say "not running"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  # our_pid, not /proc/$pid: a killed broker may linger as a zombie whose
  # cmdline is empty, and that counts as stopped.
  for _ in $(seq 1 60); do
    our_pid >/dev/null || break
    sleep 0.5
  done
  if our_pid >/dev/null; then say "pid $pid ignored SIGTERM for 30 s; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
  say "stopped pid $pid"
}

status() {
  local pid
  pid=$(our_pid) && answers && { say "running (pid $pid) on 127.0.0.1:$port"; return 0; }
  say "not running"; return 1
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
