#!/usr/bin/env bash
# Run a single-node Apache Kafka broker (KRaft) from the Maven Central jars, without Docker.
#
#   kafka.sh setup    resolve the jars into infra/kafka/libs (needs Java 17+ and Maven)
#   kafka.sh up       format storage if needed, start in the background, wait until it answers
#   kafka.sh down     stop the broker this script started (by pid)
#   kafka.sh status   say whether it runs and where
#
# Settings (environment): KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (KAFKA_PORT + 1),
# MODELBUS_RUN_DIR (<repo>/.run), KAFKA_START_TIMEOUT_S (60), KAFKA_HEAP (512m).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-19092}"
controller_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
run_dir="${MODELBUS_RUN_DIR:-$repo/.run}/kafka-$port"
data_dir="$run_dir/data"
pid_file="$run_dir/kafka.pid"
log_file="$run_dir/kafka.log"
timeout_s="${KAFKA_START_TIMEOUT_S:-60}"
classpath="$here/libs/*"

say() { echo "kafka: $*" >&2; }

running() { [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

answers() {
  java -cp "$classpath" -Dlog4j2.configurationFile="$here/log4j2.yaml" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1
}

setup() {
  if compgen -G "$here/libs/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v java >/dev/null || { say "Java 17+ is needed (apt-get install openjdk-17-jre-headless)"; exit 1; }
  command -v mvn >/dev/null || { say "Maven is needed to resolve the broker jars (apt-get install maven)"; exit 1; }
  say "resolving Apache Kafka jars from Maven Central into $here/libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$here/libs" -DincludeScope=runtime
}

up() {
  setup
  if running; then
    say "already running (pid $(cat "$pid_file")) on 127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$run_dir"
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" -e "s|@DATA_DIR@|$data_dir|g" \
    "$here/server.properties.template" >"$run_dir/server.properties"
  if [[ ! -f "$data_dir/meta.properties" ]]; then
    java -cp "$classpath" -Dlog4j2.configurationFile="$here/log4j2.yaml" kafka.tools.StorageTool format \
      --ignore-formatted -t "$(java -cp "$classpath" kafka.tools.StorageTool random-uuid)" \
      -c "$run_dir/server.properties" >>"$log_file" 2>&1 || { say "formatting storage failed:"; tail -n 30 "$log_file" >&2; exit 1; }
  fi
  say "starting on 127.0.0.1:$port (log: $log_file)"
  nohup java -Xms"${KAFKA_HEAP:-512m}" -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$classpath" \
    kafka.Kafka "$run_dir/server.properties" >>"$log_file" 2>&1 &
  echo $! >"$pid_file"
  local deadline=$((SECONDS + timeout_s))
  until answers; do
    if ! running; then
      say "the broker exited while starting; last lines of $log_file:"
      tail -n 40 "$log_file" >&2
      rm -f "$pid_file"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      say "no answer after ${timeout_s}s; last lines of $log_file:"
      tail -n 40 "$log_file" >&2
      exit 1
    fi
    sleep 1
  done
  say "ready on 127.0.0.1:$port (pid $(cat "$pid_file"))"
}

down() {
  if ! running; then
    say "not running"
    rm -f "$pid_file"
    return 0
  fi
  local pid
  pid="$(cat "$pid_file")"
  kill "$pid"
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "still running after 30s; killing pid $pid"
    kill -9 "$pid" || true
  fi
  rm -f "$pid_file"
  say "stopped"
}

status() {
  if running; then
    echo "running (pid $(cat "$pid_file")) on 127.0.0.1:$port"
  else
    echo "not running"
    return 3
  fi
}

case "${1:-}" in
  setup) setup ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 {setup|up|down|status}" >&2; exit 2 ;;
esac
