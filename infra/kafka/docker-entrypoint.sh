#!/usr/bin/env bash
# docker-compose.yml's broker with security on, in the apache/kafka image: the settings of
# `KAFKA_SECURITY=sasl_ssl infra/kafka/kafka.sh up` (SCRAM-SHA-512 over TLS for clients and
# brokers, SASL/PLAIN as admin on the controller listener, StandardAuthorizer, nothing allowed
# without an ACL), with the passwords and certificate the `credentials` service wrote to /secrets.
# Unlike kafka.sh's loopback-only controller, this one is reached over the Docker network, so
# with TLS on it speaks TLS too.
#
# Environment: SECURITY (sasl_ssl: every listener, the controller's too, speaks TLS with the
# certificate under TLS_DIR; sasl: SASL without TLS), NODE_ID (1), VOTERS (1@kafka:9093),
# ADVERTISED (kafka:9092), HOST_PORT (a second listener advertised as 127.0.0.1:HOST_PORT for
# clients on the host; none when empty), PORT (9092) and CONTROLLER_PORT (9093) to listen on,
# REPLICATION (1), MIN_ISR (1), SECRETS (/secrets/kafka-19092/credentials), TLS_DIR (tls/ beside
# SECRETS), DATA_DIR (/var/lib/kafka/data), CONFIG (/tmp/server.properties, written here),
# KAFKA_HOME (/opt/kafka).
set -euo pipefail

secrets="${SECRETS:-/secrets/kafka-19092/credentials}"
tls_dir="${TLS_DIR:-$(dirname "$secrets")/tls}"
security="${SECURITY:-sasl_ssl}"
password() { sed -n "s/^$1=//p" "$secrets/passwords"; }
admin="$(password admin)"
[[ -n "$admin" ]] || { echo "no credentials under $secrets: run the credentials service" >&2; exit 1; }
case "$security" in
  sasl) protocol=SASL_PLAINTEXT ;;
  sasl_ssl)
    protocol=SASL_SSL
    [[ -f "$tls_dir/broker.pem" && -f "$tls_dir/ca.pem" ]] || {
      echo "SECURITY=sasl_ssl but no certificate under $tls_dir: run the credentials service with" \
        "KAFKA_SECURITY=sasl_ssl (docker compose run --rm credentials)" >&2
      exit 1
    } ;;
  *) echo "SECURITY is sasl or sasl_ssl (not '$security')" >&2; exit 2 ;;
esac

listeners="INTERNAL://:${PORT:-9092},CONTROLLER://:${CONTROLLER_PORT:-9093}"
advertised="INTERNAL://${ADVERTISED:-kafka:9092}"
protocols="INTERNAL:$protocol,CONTROLLER:$protocol"
if [[ -n "${HOST_PORT:-}" ]]; then
  listeners+=",HOST://:$HOST_PORT"
  advertised+=",HOST://127.0.0.1:$HOST_PORT"
  protocols+=",HOST:$protocol"
fi
scram="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin\";"
config="${CONFIG:-/tmp/server.properties}"
umask 077
cat >"$config" <<PROPERTIES
process.roles=broker,controller
node.id=${NODE_ID:-1}
controller.quorum.voters=${VOTERS:-1@kafka:9093}
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
log.dirs=${DATA_DIR:-/var/lib/kafka/data}
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=$scram
listener.name.host.scram-sha-512.sasl.jaas.config=$scram
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin" user_admin="$admin";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
num.partitions=1
default.replication.factor=${REPLICATION:-1}
offsets.topic.replication.factor=${REPLICATION:-1}
transaction.state.log.replication.factor=${REPLICATION:-1}
transaction.state.log.min.isr=${MIN_ISR:-1}
min.insync.replicas=${MIN_ISR:-1}
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPERTIES
if [[ "$security" == sasl_ssl ]]; then
  # Peers (brokers, controllers) check the certificate names the host they dialled.
  cat >>"$config" <<PROPERTIES
ssl.keystore.type=PEM
ssl.keystore.location=$tls_dir/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls_dir/ca.pem
ssl.endpoint.identification.algorithm=https
PROPERTIES
fi

if [[ ! -f "${DATA_DIR:-/var/lib/kafka/data}/meta.properties" ]]; then
  users=()
  while IFS='=' read -r name value; do
    users+=(--add-scram "SCRAM-SHA-512=[name=$name,password=$value]")
  done <"$secrets/passwords"
  # Every node of a cluster formats with the same id, made once by the credentials service.
  "${KAFKA_HOME:-/opt/kafka}/bin/kafka-storage.sh" format --ignore-formatted -t "$(cat "$secrets/cluster.id")" \
    -c "$config" "${users[@]}"
fi
exec "${KAFKA_HOME:-/opt/kafka}/bin/kafka-server-start.sh" "$config"
