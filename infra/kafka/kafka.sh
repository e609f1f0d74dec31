#!/usr/bin/env bash
# Run Apache Kafka (KRaft) from the Maven Central jars, without Docker: one node, or a
# cluster of KAFKA_BROKERS nodes on loopback sharing one controller quorum.
#
#   kafka.sh setup            resolve the jars into infra/kafka/libs (needs Java 17+ and Maven)
#   kafka.sh up               format storage if needed, start in the background, wait until it answers
#   kafka.sh down             stop every node this script started (by pid)
#   kafka.sh status           say whether it runs and where
#   kafka.sh stop-broker ID   stop node ID gracefully (SIGTERM)   } a cluster's fault drills;
#   kafka.sh kill-broker ID   kill node ID at once (SIGKILL)      } `up` starts stopped nodes
#   kafka.sh start-broker ID  start node ID again                 } again
#   kafka.sh credentials NAME print the path of principal NAME's env file (security on)
#   kafka.sh make-credentials make the credentials only (for docker-compose.yml's broker)
#
# Settings (environment): KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (KAFKA_PORT + 1),
# KAFKA_BROKERS (1), MODELBUS_RUN_DIR (<repo>/.run), KAFKA_START_TIMEOUT_S (60), KAFKA_HEAP (512m),
# KAFKA_SECURITY (none | sasl | sasl_ssl): with sasl, clients and brokers authenticate with
# SCRAM-SHA-512 and KRaft's StandardAuthorizer denies whatever no ACL allows; sasl_ssl adds TLS
# with a CA of the run directory's own (its certificate also names the hosts in KAFKA_TLS_NAMES,
# comma-separated). Each principal (admin, registry, trainer, deployer,
# inference, monitor, client) gets a random password at first `up`, kept under
# <run dir>/credentials/ (mode 600): NAME.env to source, NAME.properties for Kafka's tools;
# KAFKA_PASSWORDS_FROM names a file of NAME=password lines (another run directory's
# credentials/passwords) whose passwords it takes instead, so one principal's credentials reach
# several brokers (the tests' session and the brokers tests start themselves).
# Node i of a cluster listens on KAFKA_PORT + 2(i-1) (clients) and the port after it (controller);
# bootstrap servers: 127.0.0.1:KAFKA_PORT,127.0.0.1:KAFKA_PORT+2,...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-19092}"
brokers="${KAFKA_BROKERS:-1}"
run_dir="${MODELBUS_RUN_DIR:-$repo/.run}/kafka-$port"
timeout_s="${KAFKA_START_TIMEOUT_S:-60}"
classpath="$here/libs/*"
security="${KAFKA_SECURITY:-none}"
secrets_dir="$run_dir/credentials"
tls_dir="$run_dir/tls"
principals=(admin registry trainer deployer inference monitor client)

say() { echo "kafka: $*" >&2; }

# A single node keeps the layout it always had; node i of a cluster lives under node-i/.
node_dir() { if ((brokers == 1)); then echo "$run_dir"; else echo "$run_dir/node-$1"; fi; }
node_port() { echo $((port + 2 * ($1 - 1))); }
controller_port() {
  if ((brokers == 1)); then echo "${KAFKA_CONTROLLER_PORT:-$((port + 1))}"; else echo $(($(node_port "$1") + 1)); fi
}
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }
log_file() { echo "$(node_dir "$1")/kafka.log"; }
running() { [[ -f "$(pid_file "$1")" ]] && kill -0 "$(cat "$(pid_file "$1")")" 2>/dev/null; }
bootstrap() {
  local servers=() id
  for id in $(seq 1 "$brokers"); do servers+=("127.0.0.1:$(node_port "$id")"); done
  (IFS=,; echo "${servers[*]}")
}

answers() {
  local auth=()
  if secure; then auth=(--command-config "$secrets_dir/admin.properties"); fi
  java -cp "$classpath" -Dlog4j2.configurationFile="$here/log4j2.yaml" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$(node_port "$1")" "${auth[@]}" \
    --list >/dev/null 2>&1
}

secure() { [[ "$security" != none ]]; }
client_protocol() { if [[ "$security" == sasl_ssl ]]; then echo SASL_SSL; else echo SASL_PLAINTEXT; fi; }
password_of() { sed -n "s/^$1=//p" "$secrets_dir/passwords"; }
random_password() { openssl rand -hex 24 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(24))'; }

check_security() {
  case "$security" in
    none | sasl | sasl_ssl) ;;
    *) say "KAFKA_SECURITY is none, sasl or sasl_ssl (not '$security')"; exit 2 ;;
  esac
}

# A CA of this run directory's own and a broker certificate for 127.0.0.1/localhost it signs,
# and for the host names in KAFKA_TLS_NAMES (comma-separated: docker-compose.yml's broker names).
make_tls() {
  [[ -f "$tls_dir/broker.pem" ]] && return 0
  mkdir -p "$tls_dir"
  local quiet="$tls_dir/openssl.log"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=modelbus local CA" -keyout "$tls_dir/ca.key" -out "$tls_dir/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>>"$quiet"
  local names="IP:127.0.0.1,DNS:localhost" extra="${KAFKA_TLS_NAMES:-}" name
  for name in ${extra//,/ }; do names+=",DNS:$name"; done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls_dir/broker.key" -out "$tls_dir/broker.csr" 2>>"$quiet"
  openssl x509 -req -in "$tls_dir/broker.csr" -CA "$tls_dir/ca.pem" -CAkey "$tls_dir/ca.key" \
    -CAcreateserial -days 825 -out "$tls_dir/broker.crt" 2>>"$quiet" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$names")
  cat "$tls_dir/broker.key" "$tls_dir/broker.crt" >"$tls_dir/broker.pem"
  chmod 644 "$tls_dir/ca.pem"
}

# Random passwords, made once per run directory (never committed, never a default), and for
# each principal an env file for modelbus and a properties file for Kafka's own tools.
make_credentials() {
  local name password protocol
  protocol="$(client_protocol)"
  umask 077
  mkdir -p "$secrets_dir"
  if [[ ! -f "$secrets_dir/passwords" ]]; then
    if [[ -n "${KAFKA_PASSWORDS_FROM:-}" ]]; then
      [[ -f "$KAFKA_PASSWORDS_FROM" ]] || { say "KAFKA_PASSWORDS_FROM=$KAFKA_PASSWORDS_FROM is no file"; exit 1; }
      for name in "${principals[@]}"; do grep -E "^$name=.+" "$KAFKA_PASSWORDS_FROM" || true; done >"$secrets_dir/passwords"
    fi
    touch "$secrets_dir/passwords"
    for name in "${principals[@]}"; do
      [[ -n "$(password_of "$name")" ]] || echo "$name=$(random_password)" >>"$secrets_dir/passwords"
    done
  fi
  if [[ "$security" == sasl_ssl ]]; then make_tls; fi
  for name in "${principals[@]}"; do
    password="$(password_of "$name")"
    {
      echo "export MODELBUS_BOOTSTRAP_SERVERS=$(bootstrap)"
      echo "export MODELBUS_KAFKA_SECURITY_PROTOCOL=$protocol"
      echo "export MODELBUS_KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
      echo "export MODELBUS_KAFKA_SASL_USERNAME=$name"
      echo "export MODELBUS_KAFKA_SASL_PASSWORD=$password"
      echo "export MODELBUS_KAFKA_CREDENTIALS_DIR=$secrets_dir"
      if [[ "$security" == sasl_ssl ]]; then echo "export MODELBUS_KAFKA_SSL_CA_LOCATION=$tls_dir/ca.pem"; fi
    } >"$secrets_dir/$name.env"
    {
      echo "security.protocol=$protocol"
      echo "sasl.mechanism=SCRAM-SHA-512"
      echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$name\" password=\"$password\";"
      if [[ "$security" == sasl_ssl ]]; then
        echo "ssl.truststore.type=PEM"
        echo "ssl.truststore.location=$tls_dir/ca.pem"
      fi
    } >"$secrets_dir/$name.properties"
  done
  umask 022
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

configure() {
  local id="$1" dir voters="" replication min_isr other
  dir="$(node_dir "$id")"
  for other in $(seq 1 "$brokers"); do voters+="${voters:+,}$other@127.0.0.1:$(controller_port "$other")"; done
  replication=$((brokers >= 3 ? 3 : 1))
  min_isr=$((brokers >= 3 ? 2 : 1))
  mkdir -p "$dir"
  if secure; then umask 077; fi  # server.properties then holds the admin password
  sed -e "s|@NODE_ID@|$id|g" -e "s|@VOTERS@|$voters|g" -e "s|@PORT@|$(node_port "$id")|g" \
    -e "s|@CONTROLLER_PORT@|$(controller_port "$id")|g" -e "s|@DATA_DIR@|$dir/data|g" \
    -e "s|@REPLICATION@|$replication|g" -e "s|@MIN_ISR@|$min_isr|g" \
    "$here/server.properties.template" >"$dir/server.properties"
  if secure; then
    local protocol
    protocol="$(client_protocol)"
    sed -e "s|@PROTO@|$protocol|g" -e "s|@LISTENER@|${protocol,,}|g" -e "s|@PORT@|$(node_port "$id")|g" \
      -e "s|@CONTROLLER_PORT@|$(controller_port "$id")|g" -e "s|@ADMIN_PASSWORD@|$(password_of admin)|g" \
      "$here/server.sasl.properties.template" >>"$dir/server.properties"
    if [[ "$security" == sasl_ssl ]]; then
      sed -e "s|@TLS_DIR@|$tls_dir|g" "$here/server.tls.properties.template" >>"$dir/server.properties"
    fi
    umask 022
  fi
}

format_storage() {
  local cluster_id id
  cluster_id_file="$run_dir/cluster.id"
  mkdir -p "$run_dir"
  [[ -f "$cluster_id_file" ]] || java -cp "$classpath" kafka.tools.StorageTool random-uuid >"$cluster_id_file"
  cluster_id="$(cat "$cluster_id_file")"
  local scram=() name
  if secure; then
    make_credentials
    for name in "${principals[@]}"; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$name,password=$(password_of "$name")]")
    done
  fi
  for id in $(seq 1 "$brokers"); do
    configure "$id"
    if [[ ! -f "$(node_dir "$id")/data/meta.properties" ]]; then
      java -cp "$classpath" -Dlog4j2.configurationFile="$here/log4j2.yaml" kafka.tools.StorageTool format \
        --ignore-formatted -t "$cluster_id" -c "$(node_dir "$id")/server.properties" "${scram[@]}" \
        >>"$(log_file "$id")" 2>&1 \
        || { say "formatting storage of node $id failed:"; tail -n 30 "$(log_file "$id")" >&2; exit 1; }
      if secure; then touch "$(node_dir "$id")/data/scram-credentials"; fi
    elif secure && [[ ! -f "$(node_dir "$id")/data/scram-credentials" ]]; then
      say "node $id's storage was formatted with security off, so it holds no SCRAM credentials;"
      say "start it with KAFKA_SECURITY=none, or remove $run_dir (its data too) and run up again"
      exit 1
    fi
  done
}

start_node() {
  local id="$1"
  if running "$id"; then return 0; fi
  configure "$id"
  nohup java -Xms"${KAFKA_HEAP:-512m}" -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$classpath" \
    kafka.Kafka "$(node_dir "$id")/server.properties" >>"$(log_file "$id")" 2>&1 &
  echo $! >"$(pid_file "$id")"
}

wait_until_answers() {
  local id="$1" deadline=$((SECONDS + timeout_s))
  until answers "$id"; do
    if ! running "$id"; then
      say "node $id exited while starting; last lines of $(log_file "$id"):"
      tail -n 40 "$(log_file "$id")" >&2
      rm -f "$(pid_file "$id")"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      say "node $id gave no answer after ${timeout_s}s; last lines of $(log_file "$id"):"
      tail -n 40 "$(log_file "$id")" >&2
      exit 1
    fi
    sleep 1
  done
}

up() {
  check_security
  setup
  local id all_running=1
  for id in $(seq 1 "$brokers"); do running "$id" || all_running=0; done
  if ((all_running)); then
    check_running_security
    say "already running on $(bootstrap)"
    return 0
  fi
  format_storage
  for id in $(seq 1 "$brokers"); do
    running "$id" || say "starting node $id on 127.0.0.1:$(node_port "$id") (log: $(log_file "$id"))"
    start_node "$id"
  done
  for id in $(seq 1 "$brokers"); do wait_until_answers "$id"; done
  if secure; then apply_acls; fi
  say "ready on $(bootstrap)"
}

# A running broker keeps the security it started with: say so at once rather than let clients
# of the other kind time out against it.
check_running_security() {
  local started_secure=0
  grep -q '^sasl.enabled.mechanisms=' "$(node_dir 1)/server.properties" 2>/dev/null && started_secure=1
  if secure && ((!started_secure)); then
    say "already running on $(bootstrap) with security off, but KAFKA_SECURITY=$security:"
    say "stop it (down), remove $run_dir (its data too) and run up again, or use KAFKA_SECURITY=none"
    exit 1
  fi
  if ! secure && ((started_secure)); then
    say "already running on $(bootstrap) with security on, but KAFKA_SECURITY=none:"
    say "its clients need the credentials under $secrets_dir (or stop it and start it with KAFKA_SECURITY=none)"
    exit 1
  fi
}

# The ACL table of libs/modelbus (modelbus.bus.acls) for the models in MODELBUS_MODELS
# (default credit), applied as admin; applying it again changes nothing.
apply_acls() {
  local python="${MODELBUS_PYTHON:-$repo/.venv/bin/python}"
  if [[ ! -x "$python" ]]; then
    say "no $python yet (make setup): apply the ACLs as admin with 'modelbus acls apply'"
    return 0
  fi
  (
    # shellcheck disable=SC1091
    source "$secrets_dir/admin.env"
    "$python" -m modelbus.cli acls apply >>"$(log_file 1)" 2>&1
  ) || { say "applying the ACLs failed; see $(log_file 1)"; exit 1; }
  say "ACLs applied (modelbus acls apply; credentials under $secrets_dir)"
}

stop_node() {
  local id="$1" signal="$2" pid
  if ! running "$id"; then
    rm -f "$(pid_file "$id")"
    return 1
  fi
  pid="$(cat "$(pid_file "$id")")"
  kill "-$signal" "$pid"
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "node $id still running after 30s; killing pid $pid"
    kill -9 "$pid" || true
  fi
  rm -f "$(pid_file "$id")"
}

down() {
  local id pids=() pid
  # Every node at once: a node left alone without its quorum cannot shut down cleanly.
  for id in $(seq 1 "$brokers"); do
    if running "$id"; then pids+=("$(cat "$(pid_file "$id")")"); kill -TERM "${pids[-1]}"; fi
    rm -f "$(pid_file "$id")"
  done
  if ((${#pids[@]} == 0)); then
    say "not running"
    return 0
  fi
  for _ in $(seq 1 30); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid still running after 30s; killing it"
      kill -9 "$pid" || true
    fi
  done
  say "stopped"
}

status() {
  local id up_nodes=()
  for id in $(seq 1 "$brokers"); do running "$id" && up_nodes+=("$id"); done
  if ((${#up_nodes[@]} == 0)); then
    echo "not running"
    return 3
  fi
  if ((brokers == 1)); then
    echo "running (pid $(cat "$(pid_file 1)")) on 127.0.0.1:$port"
  else
    echo "nodes ${up_nodes[*]} of $brokers running; bootstrap $(bootstrap)"
  fi
}

node_arg() {
  local id="${1:-}"
  [[ "$id" =~ ^[0-9]+$ ]] && ((id >= 1 && id <= brokers)) \
    || { say "name a node between 1 and $brokers (KAFKA_BROKERS=$brokers)"; exit 2; }
  echo "$id"
}

case "${1:-}" in
  setup) setup ;;
  up) up ;;
  down) down ;;
  status) status ;;
  bootstrap) bootstrap ;;
  credentials)
    [[ " ${principals[*]} " == *" ${2:-} "* ]] || { say "name one of: ${principals[*]}"; exit 2; }
    [[ -f "$secrets_dir/$2.env" ]] || { say "no credentials under $secrets_dir (KAFKA_SECURITY=sasl ... up makes them)"; exit 1; }
    echo "$secrets_dir/$2.env" ;;
  make-credentials) [[ "$security" != none ]] || security=sasl; check_security; make_credentials ;;
  stop-broker) id="$(node_arg "${2:-}")"; stop_node "$id" TERM || say "node $id was not running" ;;
  kill-broker) id="$(node_arg "${2:-}")"; stop_node "$id" KILL || say "node $id was not running" ;;
  start-broker) id="$(node_arg "${2:-}")"; start_node "$id"; wait_until_answers "$id"; say "node $id ready" ;;
  *) echo "usage: $0 {setup|up|down|status|bootstrap|credentials NAME|stop-broker ID|kill-broker ID|start-broker ID}" >&2; exit 2 ;;
esac
