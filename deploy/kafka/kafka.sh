#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller in one JVM) from
# plain jars fetched through deploy/kafka/pom.xml. No Docker.
#
#   kafka.sh up       fetch jars (once), format fresh storage, start in the
#                     background, return when the broker answers a metadata request
#   kafka.sh down     stop exactly the process `up` started (by PID); idempotent
#   kafka.sh status   exit 0 when our broker runs and answers
#   kafka.sh stop     stop the broker (SIGTERM, SIGKILL after 30 s), keeping its
#                     storage; idempotent
#   kafka.sh start    start the broker on the storage it already has (same
#                     cluster id, topics, committed offsets, transactions; only
#                     when there is none, format fresh storage as `up` does) and
#                     return when it answers; idempotent
#   kafka.sh restart  stop, then start
#
# Neither `down` nor `stop` deletes anything; `up` is what starts from empty
# storage. up and start refuse when KAFKA_PORT or KAFKA_PORT+1 is taken.
#
# Environment: KAFKA_PORT (default 9092; the controller listens on
# KAFKA_PORT+1), KAFKA_CACHE_DIR (default .cache/kafka in the repo; each port
# has its own run-PORT directory in it), KAFKA_HEAP (default 768m).
#
# Security of the client listener on KAFKA_PORT, chosen when storage is
# formatted (`up`, or `start` without storage) and kept by `start`/`restart`:
#   KAFKA_SECURITY       plaintext (default), sasl (SASL_PLAINTEXT) or
#                        sasl_ssl (SASL_SSL); both SASL modes use SCRAM-SHA-512
#   KAFKA_SASL_USER      the client user created at format time
#                        (default event-poller)
#   KAFKA_SASL_PASSWORD  its password (default event-poller-local); letters,
#                        digits and . _ ~ + @ % : - only
# The broker authenticates to itself (inter-broker) as user admin with a
# random password; there is no authorizer, so any authenticated user may do
# anything. sasl_ssl makes a throw-away CA and a broker certificate for
# 127.0.0.1 and localhost; clients trust RUN/ca.pem (librdkafka:
# ssl.ca.location). Java tools can use RUN/client.properties
# (--command-config). `up` prints both paths.
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
# What this run directory was formatted with (absent: plaintext, as before
# the security modes existed), and the files clients of a SASL broker need.
security_env=$run/security.env
client_properties=$run/client.properties
ca_pem=$run/ca.pem

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
# when it can list topics, not merely when the port accepts connections. A
# SASL broker is asked as the client user, so that user is known to work.
answers() {
  local auth=()
  [ -f "$client_properties" ] && auth=(--command-config "$client_properties")
  timeout 20 java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$libs/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list \
    "${auth[@]}" >/dev/null 2>&1
}

# The security mode the run directory was formatted with.
recorded_security() {
  if [ -f "$security_env" ]; then sed -n 's/^mode=//p' "$security_env"; else echo plaintext; fi
}

# The mode asked for: KAFKA_SECURITY, else $1 (the default of the action).
wanted_security() {
  local mode=${KAFKA_SECURITY:-$1}
  case $mode in
    plaintext|sasl|sasl_ssl) echo "$mode" ;;
    *) say "KAFKA_SECURITY must be plaintext, sasl or sasl_ssl"; exit 1 ;;
  esac
}

# The listener's security.protocol for mode $1.
protocol_of() {
  case $1 in
    plaintext) echo PLAINTEXT ;;
    sasl) echo SASL_PLAINTEXT ;;
    sasl_ssl) echo SASL_SSL ;;
  esac
}

# Values end up inside the quotes of a JAAS line and a --add-scram
# credential, where quotes, commas and brackets would break (or inject)
# syntax; so only characters that need no quoting anywhere are accepted.
check_credential() {
  if [[ ! $2 =~ ^[A-Za-z0-9._~+@%:-]+$ ]]; then
    say "$1 must be non-empty and use only letters, digits and . _ ~ + @ % : -"
    exit 1
  fi
}

random_secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

sasl_user=${KAFKA_SASL_USER:-event-poller}
sasl_password=${KAFKA_SASL_PASSWORD:-event-poller-local}

# Before anything is stopped or deleted.
check_credentials() {
  check_credential KAFKA_SASL_USER "$sasl_user"
  check_credential KAFKA_SASL_PASSWORD "$sasl_password"
  if [ "$sasl_user" = admin ]; then say "KAFKA_SASL_USER admin is the broker's own user; choose another"; exit 1; fi
}

# Chooses the security of fresh storage and records it (secrets included:
# `start` must recreate the same configuration) in $security_env.
record_security() {
  local mode=$1
  if [ "$mode" = plaintext ]; then
    echo "mode=plaintext" > "$security_env"
    return 0
  fi
  local user=$sasl_user password=$sasl_password
  printf '%s\n' "mode=$mode" "user=$user" "password=$password" \
    "admin_password=$(random_secret)" "store_password=$(random_secret)" > "$security_env"
}

# Field $1 of $security_env.
recorded() { sed -n "s/^$1=//p" "$security_env"; }

# A throw-away CA (its certificate in $ca_pem) and a PKCS12 keystore with the
# broker's key and a certificate the CA signed for 127.0.0.1 and localhost
# (librdkafka and Java both check the host name by default). keytool, not
# openssl: it comes with the Java the broker needs anyway.
make_tls() {
  local dir=$run/tls
  mkdir -p "$dir"
  KAFKA_STORE_PASSWORD=$(recorded store_password)
  export KAFKA_STORE_PASSWORD
  kt() {
    keytool -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC "$@" \
      -storetype PKCS12 -storepass:env KAFKA_STORE_PASSWORD >> "$log" 2>&1
  }
  kt -genkeypair -alias ca -keyalg EC -groupname secp256r1 -validity 3650 \
    -dname "CN=event-poller local Kafka CA" -ext bc:c -keystore "$dir/ca.p12"
  kt -exportcert -rfc -alias ca -keystore "$dir/ca.p12" -file "$ca_pem"
  kt -genkeypair -alias broker -keyalg EC -groupname secp256r1 -validity 3650 \
    -dname "CN=localhost" -keystore "$dir/broker.p12"
  kt -certreq -alias broker -keystore "$dir/broker.p12" -file "$dir/broker.csr"
  kt -gencert -alias ca -keystore "$dir/ca.p12" -infile "$dir/broker.csr" \
    -outfile "$dir/broker.pem" -rfc -validity 3650 -ext san=ip:127.0.0.1,dns:localhost
  kt -importcert -alias ca -file "$ca_pem" -keystore "$dir/broker.p12" -noprompt
  kt -importcert -alias broker -file "$dir/broker.pem" -keystore "$dir/broker.p12"
  unset KAFKA_STORE_PASSWORD
}

# The SASL (and TLS) part of server.properties, and the client properties
# for Java tools.
security_config() {
  local mode protocol listener jaas
  mode=$(recorded_security)
  [ "$mode" = plaintext ] && return 0
  protocol=$(protocol_of "$mode")
  listener=$(echo "$protocol" | tr '[:upper:]' '[:lower:]')
  jaas='org.apache.kafka.common.security.scram.ScramLoginModule required'
  {
    echo
    echo "# KAFKA_SECURITY=$mode (appended by kafka.sh)"
    echo "sasl.enabled.mechanisms=SCRAM-SHA-512"
    echo "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512"
    echo "listener.name.$listener.scram-sha-512.sasl.jaas.config=$jaas username=\"admin\" password=\"$(recorded admin_password)\";"
  } >> "$run/server.properties"
  {
    echo "security.protocol=$protocol"
    echo "sasl.mechanism=SCRAM-SHA-512"
    echo "sasl.jaas.config=$jaas username=\"$(recorded user)\" password=\"$(recorded password)\";"
  } > "$client_properties"
  if [ "$mode" = sasl_ssl ]; then
    [ -f "$run/tls/broker.p12" ] || make_tls
    {
      echo "ssl.keystore.type=PKCS12"
      echo "ssl.keystore.location=$run/tls/broker.p12"
      echo "ssl.keystore.password=$(recorded store_password)"
      echo "ssl.key.password=$(recorded store_password)"
      # The broker is a TLS client of itself (inter-broker listener).
      echo "ssl.truststore.type=PEM"
      echo "ssl.truststore.location=$ca_pem"
    } >> "$run/server.properties"
    printf '%s\n' "ssl.truststore.type=PEM" "ssl.truststore.location=$ca_pem" >> "$client_properties"
  fi
}

# How clients reach the broker (never the password: it is the operator's).
describe_security() {
  local mode
  mode=$(recorded_security)
  [ "$mode" = plaintext ] && return 0
  say "clients: security.protocol=$(protocol_of "$mode") sasl.mechanism=SCRAM-SHA-512 sasl.username=$(recorded user) (password: KAFKA_SASL_PASSWORD at format time)"
  [ "$mode" = sasl_ssl ] && say "CA certificate for clients (ssl.ca.location): $ca_pem"
  say "Java client properties (--command-config): $client_properties"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Both listeners need their port: a taken controller port would otherwise
# only show up as a broker that dies during start-up.
ports_free() {
  if port_open "$port"; then say "127.0.0.1:$port is taken by another process"; exit 1; fi
  if port_open "$controller_port"; then
    say "127.0.0.1:$controller_port (the controller port, KAFKA_PORT+1) is taken by another process"
    exit 1
  fi
}

# "STATE STARTTIME" of process $1 (fields 3 and 22 of /proc/$1/stat).
proc_stat() {
  local stat f
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
  read -r -a f <<< "${stat##*) }"
  echo "${f[0]} ${f[19]}"
}

# Whether process $1 (started at clock tick $2, if given: a recycled PID is
# another process) still runs. kill -0 alone also succeeds for a zombie, and
# a cmdline is no test: it reads empty while the process execs and once its
# main thread has exited. A zombie main thread whose other threads still run
# (/proc/$1/task) counts as running: those threads may still hold the ports.
alive() {
  local s tasks
  kill -0 "$1" 2>/dev/null || return 1
  s=$(proc_stat "$1") || return 1
  [ -z "${2:-}" ] || [ "${s#* }" = "$2" ] || return 1
  case ${s%% *} in
    Z|X|x) tasks=("/proc/$1/task/"*); [ "${#tasks[@]}" -gt 1 ] ;;
  esac
}

# Process $1 is alive and is our broker (see our_pid).
is_ours() {
  alive "$1" || return 1
  local cmdline
  cmdline=$(tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline") || return 1
  [[ $cmdline == *"kafka.Kafka $run/server.properties "* ]]
}

# A live broker on our server.properties, whatever its PID: the start-up
# wait's last check before it calls the broker dead.
find_ours() {
  local d
  for d in /proc/[0-9]*; do
    if is_ours "${d#/proc/}"; then echo "${d#/proc/}"; return 0; fi
  done
  return 1
}

config() {
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
    -e "s|@DATA_DIR@|$run/data|g" -e "s|@PROTOCOL@|$(protocol_of "$(recorded_security)")|g" \
    "$here/server.properties" > "$run/server.properties"
  security_config
}

# Empty run directory, config, storage formatted with a new cluster id (and,
# for SASL, the SCRAM users: a KRaft broker reads them from its metadata log,
# so they must exist before it first starts).
fresh_storage() {
  local mode=$1
  rm -rf "$run"
  # The run directory holds passwords and the broker's key.
  (umask 077 && mkdir -p "$run/data")
  record_security "$mode"
  config
  local cluster_id scram=()
  if [ "$mode" != plaintext ]; then
    scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(recorded admin_password)]"
      --add-scram "SCRAM-SHA-512=[name=$(recorded user),password=$(recorded password)]")
  fi
  cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid)
  java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$run/server.properties" \
    "${scram[@]}" >> "$log" 2>&1
}

# Start the broker on the storage in $run in the background and return when
# it answers. On failure exit 1 and leave no broker running.
launch() {
  local started
  started=$(date +%s)
  # setsid: the broker must outlive this script and not receive the
  # terminal's Ctrl-C meant for a test run.
  setsid bash -c 'exec "$@"' _ java -Xms256m "-Xmx$heap" -XX:+UseSerialGC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$libs/*" \
    kafka.Kafka "$run/server.properties" >> "$log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$pidfile"
  say "started pid $pid on 127.0.0.1:$port; log: $log"
  local deadline=$((started + 120))
  local other
  until port_open "$port" && answers; do
    # alive, not our_pid: until bash has exec'd java the cmdline differs.
    if ! alive "$pid"; then
      # Dead only if no broker of ours runs under another PID either (had
      # setsid needed to fork, $! would not be the broker's PID).
      if other=$(find_ours); then
        say "broker runs as pid $other, not $pid"
        pid=$other
        echo "$pid" > "$pidfile"
        continue
      fi
      say "broker exited during start-up; last log lines:"; tail -n 30 "$log" >&2; rm -f "$pidfile"; exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "broker pid $pid is running but did not answer within 120 s; stopping it; last log lines:"
      tail -n 30 "$log" >&2
      stop_pid "$pid" || true
      rm -f "$pidfile"
      exit 1
    fi
    sleep 0.5
  done
  say "ready after $(($(date +%s) - started)) s"
  describe_security
}

# The common start of `up` and `start`: succeeds (nothing to do) when our
# broker runs and answers; otherwise stops a broker that does not answer,
# checks both ports, Java and the jars, and fails so the caller launches.
running_or_prepare() {
  local mode=$1
  if pid=$(our_pid); then
    if [ "$(recorded_security)" != "$mode" ]; then
      say "the broker (pid $pid) runs with KAFKA_SECURITY=$(recorded_security), not $mode; run \`kafka.sh down\` first"
      exit 1
    fi
    if answers; then
      say "already running (pid $pid) on 127.0.0.1:$port; log: $log"
      describe_security
      return 0
    fi
    say "pid $pid does not answer; restarting it"
    down
  fi
  ports_free
  command -v java >/dev/null || { say "java not found (install a JRE 17+)"; exit 1; }
  fetch_jars
  return 1
}

up() {
  local mode
  mode=$(wanted_security plaintext)
  [ "$mode" = plaintext ] || check_credentials
  running_or_prepare "$mode" && return 0
  fresh_storage "$mode"
  launch
}

start() {
  local mode
  # Without KAFKA_SECURITY, whatever the storage was formatted with.
  mode=$(wanted_security "$(recorded_security)")
  running_or_prepare "$mode" && return 0
  if [ -f "$run/data/meta.properties" ]; then
    # Formatted storage is reused as it is: formatting again would give the
    # broker a new cluster id and lose every topic, offset and transaction.
    # Its SCRAM users are in that storage too, so its mode cannot change.
    if [ "$(recorded_security)" != "$mode" ]; then
      say "storage $run/data was formatted with KAFKA_SECURITY=$(recorded_security), not $mode; \`kafka.sh up\` formats fresh storage"
      exit 1
    fi
    [ -f "$run/server.properties" ] || config
    say "reusing storage $run/data (cluster id $(sed -n 's/^cluster\.id=//p' "$run/data/meta.properties"))"
  else
    [ "$mode" = plaintext ] || check_credentials
    say "no storage in $run/data yet; formatting fresh storage"
    fresh_storage "$mode"
  fi
  launch
}

# SIGTERM, up to 30 s for the broker to be gone, then SIGKILL and up to 10 s
# more. Gone is alive failing for the process seen before the SIGTERM (same
# PID and start time), which includes an exited zombie: it holds no port.
stop_pid() {
  local pid=$1 since
  since=$(proc_stat "$pid") || return 0
  since=${since#* }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    alive "$pid" "$since" || return 0
    sleep 0.5
  done
  alive "$pid" "$since" || return 0
  say "pid $pid ignored SIGTERM for 30 s; killing"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    alive "$pid" "$since" || return 0
    sleep 0.5
  done
  say "pid $pid still runs 10 s after SIGKILL"
  return 1
}

down() {
  local pid
  if ! pid=$(our_pid); then rm -f "$pidfile"; say "not running"; return 0; fi
  stop_pid "$pid" || exit 1
  rm -f "$pidfile"
  say "stopped pid $pid"
}

# The same as down: neither deletes the storage (up is what starts afresh).
stop() { down; }

restart() {
  stop
  start
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
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  *) echo "usage: $0 up|down|status|start|stop|restart" >&2; exit 2 ;;
esac
