#!/usr/bin/env bash
# `make services`: PostgreSQL and Redis on loopback, as CI runs the suite against them.
#
# Installs Debian's packages when missing, starts the servers when they are not running (these
# machines have no systemd: pg_ctlcluster, and redis-server --daemonize), creates the role and
# database Warden uses, and waits until each answers. Running it again, or where the servers
# already run, changes nothing and takes a second.
#
#   DATABASE_URL=postgres://warden:warden@127.0.0.1:5432/warden
#   CELERY_BROKER_URL=redis://127.0.0.1:6379/0
set -euo pipefail

PG_PORT="${WARDEN_PG_PORT:-5432}"
PG_ROLE=warden
PG_PASSWORD=warden            # a throw-away server on loopback, for tests only
PG_DATABASE=warden
REDIS_PORT="${WARDEN_REDIS_PORT:-6379}"
VAR="${WARDEN_SERVICES_DIR:-$(cd "$(dirname "$0")/.." && pwd)/var/services}"

say() { printf 'services: %s\n' "$*"; }

wait_until() {  # wait_until SECONDS WHAT COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "$what did not answer within ${seconds}s"; return 1
}

install_missing() {
  local missing=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  say "installing Debian packages:$missing"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # Without systemd the packages' own start scripts may or may not start a server: we start
  # what is not running below either way.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

postgresql() {
  # The first Debian cluster on our port, else a new one (the package makes one on install).
  local cluster
  cluster=$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port {print $1 " " $2; exit}')
  if [ -z "$cluster" ]; then
    local version; version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    say "creating PostgreSQL $version cluster 'warden' on port $PG_PORT"
    as_postgres true  # the postgres user exists (the package made it)
    pg_createcluster --port "$PG_PORT" "$version" warden >/dev/null
    cluster="$version warden"
  fi
  set -- $cluster
  if ! pg_lsclusters -h | awk -v v="$1" -v n="$2" '$1 == v && $2 == n {print $4}' | grep -q online; then
    say "starting PostgreSQL $1/$2 on port $PG_PORT"
    pg_ctlcluster "$1" "$2" start
  fi
  wait_until 30 PostgreSQL pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
  # The role may create databases: pytest-django makes a test database per worker.
  as_postgres psql -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres <<SQL
SELECT 'CREATE ROLE $PG_ROLE LOGIN CREATEDB'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') \gexec
ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
-- Throw-away test data: a commit need not wait for the disk.
ALTER ROLE $PG_ROLE SET synchronous_commit = off;
SELECT 'CREATE DATABASE $PG_DATABASE OWNER $PG_ROLE'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DATABASE') \gexec
SQL
  wait_until 10 "PostgreSQL as $PG_ROLE" env PGPASSWORD="$PG_PASSWORD" \
    psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DATABASE" -Atqc 'SELECT 1'
  say "PostgreSQL: postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE"
}

redis() {
  if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
    mkdir -p "$VAR/redis"
    say "starting Redis on 127.0.0.1:$REDIS_PORT (data and log in $VAR/redis)"
    # A broker for tests: nothing to keep across restarts.
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$VAR/redis" --dbfilename "dump-$REDIS_PORT.rdb" \
      --pidfile "$VAR/redis/redis-$REDIS_PORT.pid" --logfile "$VAR/redis/redis-$REDIS_PORT.log" \
      --save "" --appendonly no
  fi
  wait_until 30 Redis sh -c "redis-cli -h 127.0.0.1 -p $REDIS_PORT ping | grep -q PONG"
  say "Redis: redis://127.0.0.1:$REDIS_PORT/0"
}

install_missing postgresql redis-server redis-tools
postgresql
redis
