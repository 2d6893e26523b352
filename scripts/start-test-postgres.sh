#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the test suite and prints its SQLAlchemy URL.
# Installs the server from Debian's packages when it is missing. PostgreSQL refuses to run as root, so
# as root the cluster runs as the `postgres` system user.
#
# With OPTIO_PG_DATA_FILE set, the cluster's data directory is written to that file, for
# scripts/stop-test-postgres.sh to stop it and remove it afterwards.
#
# usage: scripts/start-test-postgres.sh [PORT]   (default: a free port)
set -euo pipefail
port="${1:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    echo "PostgreSQL server binaries not found and not root to install them" >&2
    exit 1
  fi
  pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi
pgdata="$(mktemp -d /tmp/optio-pg.XXXXXX)"
if [ -n "${OPTIO_PG_DATA_FILE:-}" ]; then echo "$pgdata" >"$OPTIO_PG_DATA_FILE"; fi
run=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$pgdata"
  run=(runuser -u postgres --)
fi
"${run[@]}" "$pgbin/initdb" -D "$pgdata" -A trust -U optio >/dev/null
"${run[@]}" "$pgbin/pg_ctl" -D "$pgdata" -w -l "$pgdata/server.log" \
  -o "-p $port -h 127.0.0.1 -k $pgdata -c fsync=off -c max_connections=200" start >&2
echo "postgresql+psycopg://optio@127.0.0.1:$port/postgres"
