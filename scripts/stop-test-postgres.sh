#!/usr/bin/env bash
# Stops a cluster started by scripts/start-test-postgres.sh and removes its data directory.
#
# usage: scripts/stop-test-postgres.sh PGDATA
set -euo pipefail
pgdata="${1:?usage: $0 PGDATA}"
case "$pgdata" in /tmp/optio-pg.*) ;; *) echo "not a test cluster: $pgdata" >&2; exit 2 ;; esac
pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
run=()
[ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
if [ -n "$pgbin" ] && [ -f "$pgdata/postmaster.pid" ]; then
  "${run[@]}" "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
fi
rm -rf "$pgdata"
