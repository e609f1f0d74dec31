#!/usr/bin/env bash
# A throwaway PostgreSQL server for the registry's PostgreSQL test (Debian's postgresql package).
#
#   postgres.sh up     install if needed, init a trust-auth cluster, start it on 127.0.0.1
#   postgres.sh down   stop it and remove its data
#   postgres.sh url    print the admin URL the tests read from MODELBUS_TEST_POSTGRES_URL
#
# Settings (environment): POSTGRES_PORT (19394), POSTGRES_DATA_DIR (/tmp/modelbus-postgres-PORT).
set -euo pipefail

port="${POSTGRES_PORT:-19394}"
data_dir="${POSTGRES_DATA_DIR:-/tmp/modelbus-postgres-$port}"
say() { echo "postgres: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_postgres() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

up() {
  if [[ -z "$(pg_bin)" ]]; then
    say "installing Debian's postgresql package"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local bin
  bin="$(pg_bin)"
  if as_postgres "$bin/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; then
    say "already running on 127.0.0.1:$port"
    return 0
  fi
  if [[ ! -f "$data_dir/PG_VERSION" ]]; then
    mkdir -p "$data_dir"
    chown postgres:postgres "$data_dir" 2>/dev/null || true
    as_postgres "$bin/initdb" -D "$data_dir" -A trust -U postgres >/dev/null
  fi
  as_postgres "$bin/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -w -t 60 \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  say "ready on 127.0.0.1:$port"
}

down() {
  local bin
  bin="$(pg_bin)"
  if [[ -n "$bin" ]] && as_postgres "$bin/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null
    say "stopped"
  fi
  rm -rf "$data_dir"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  url) echo "postgresql://postgres@127.0.0.1:$port/postgres" ;;
  *) echo "usage: $0 {up|down|url}" >&2; exit 2 ;;
esac
