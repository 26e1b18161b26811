#!/usr/bin/env bash
# postgres-local.sh -- a throwaway PostgreSQL server from Debian's packages (apt package
# `postgresql`), for the tests and CI of ltbench's PostgreSQL store (`--store postgresql://...`).
#
# Usage:
#   postgres-local.sh start   initdb (first time) + start on 127.0.0.1:$PORT, print the URL (default; idempotent)
#   postgres-local.sh stop    stop the server this script started (pg_ctl, by its data folder)
#   postgres-local.sh url     print the URL (whether or not the server is up)
#   postgres-local.sh status  say whether it is accepting connections (exit 0 if so)
#   postgres-local.sh clean   stop + remove its folder
#
# Env knobs:
#   POSTGRES_LOCAL_PORT=55432              TCP port on 127.0.0.1
#   POSTGRES_LOCAL_DIR=/tmp/ltbench-postgres   data folder, log and unix socket live here
#   POSTGRES_LOCAL_BIN=<newest /usr/lib/postgresql/*/bin>   the server's binaries
#
# Auth is `trust` for local connections (loopback and the socket in its folder only: a test
# server, never a lab's). PostgreSQL refuses to run as root, so as root the server runs as the
# `postgres` OS user (created by the Debian package); as any other user it runs as that user.
# Exit status 3: PostgreSQL is not installed (the tests skip on it, except under CI).
set -euo pipefail

PORT=${POSTGRES_LOCAL_PORT:-55432}
DIR=${POSTGRES_LOCAL_DIR:-/tmp/ltbench-postgres}
DATA=$DIR/data
LOGF=$DIR/server.log
LOCK=$DIR.lock
URL="postgresql://postgres@127.0.0.1:$PORT/postgres"

log() { printf '[postgres_local %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit "${2:-1}"; }

pg_bin() {
  # The newest installed major version (Debian 12 ships 15).
  local bin
  bin=${POSTGRES_LOCAL_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
  [ -n "$bin" ] && [ -x "$bin/pg_ctl" ] || die "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); apt-get install postgresql" 3
  echo "$bin"
}

as_pg() { # run a server command as the user that owns the cluster, from a folder it can read
  if [ "$(id -u)" = 0 ]; then
    (cd /tmp && runuser -u postgres -- "$@")
  else
    (cd /tmp && "$@")
  fi
}

ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres; }

start() {
  local bin
  bin=$(pg_bin)
  mkdir -p "$DIR"
  # One start at a time (two test sessions starting at once must not both initdb).
  exec 9>"$LOCK"
  flock 9
  if ready; then echo "$URL"; return 0; fi
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' OS user to run the server as (the Debian package creates it)"
    chown postgres: "$DIR"
  fi
  chmod 700 "$DIR"
  if [ ! -s "$DATA/PG_VERSION" ]; then
    log "initdb in $DATA"
    rm -rf "$DATA"
    as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$DIR/initdb.log" 2>&1 9>&- \
      || die "initdb failed; see $DIR/initdb.log"
  fi
  log "starting PostgreSQL ($bin) on 127.0.0.1:$PORT"
  as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOGF" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DIR -c max_connections=200 -c fsync=off" \
    start >/dev/null 9>&- || die "the server did not start; see $LOGF"  # 9>&-: the server must not keep the lock
  ready || die "the server started but does not accept connections on 127.0.0.1:$PORT; see $LOGF"
  echo "$URL"
}

stop() {
  if [ ! -s "$DATA/postmaster.pid" ]; then log "not running (no $DATA/postmaster.pid)"; return 0; fi
  as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null && log "stopped"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  status) if ready; then log "accepting connections at $URL"; else log "not accepting connections on 127.0.0.1:$PORT"; exit 1; fi ;;
  clean) stop; rm -rf "$DIR" "$LOCK"; log "removed $DIR" ;;
  *) die "unknown command '$1'; use start, stop, url, status or clean" 2 ;;
esac
