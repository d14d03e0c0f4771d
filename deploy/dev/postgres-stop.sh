#!/usr/bin/env bash
# postgres-stop.sh DIR: stop what postgres-start.sh DIR started, by the pid in
# DIR/postgres.pid once that pid is checked to run PostgreSQL's server (never by name): SIGINT
# (a fast shutdown: sessions are ended, nothing waits for clients), up to 15 s, then TERM and
# KILL. Idempotent. The cluster (in the folder DIR/server-dir names) stays for the next start.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# = 1 ] || { echo "usage: postgres-stop.sh DIR" >&2; exit 2; }
[ -d "$1" ] || exit 0
DIR=$(readlink -f "$1")
exec 9>"$DIR/.lock"
flock -w 120 9 || fail "$DIR/.lock is held"

PIDFILE=$DIR/postgres.pid
BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
[ -n "$BIN" ] || { rm -f "$PIDFILE"; exit 0; }
if pid=$(pidfile_pid "$PIDFILE" "$BIN/postgres"); then
  say "stopping postgres (pid $pid)"
  kill -INT "$pid" 2>/dev/null || true
  wait_gone "$pid" || wait_gone "$pid" || wait_gone "$pid" || true
fi
stop_pidfile "$PIDFILE" "$BIN/postgres"
exit 0
