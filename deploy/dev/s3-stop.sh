#!/usr/bin/env bash
# Stop the SeaweedFS gateway that s3-start.sh started in STATE_DIR: by its pidfile only.
#
# Usage: s3-stop.sh STATE_DIR
# Checks that the pid still runs a weed binary before signalling it (a recycled pid is left
# alone), sends TERM, waits up to S3_STOP_WAIT_S seconds (default 20), then KILL. Data stays in
# STATE_DIR/data. Exit 0 also when nothing was running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ $# -ne 1 ]; then
    say "usage: $0 STATE_DIR"
    exit 2
fi
DIR=$1
WAIT_S=${S3_STOP_WAIT_S:-20}
PIDFILE="$DIR/s3.pid"
[ -f "$PIDFILE" ] || { say "no pidfile at $PIDFILE; nothing to stop"; exit 0; }
PID=$(cat "$PIDFILE")
case "$PID" in ''|*[!0-9]*) rm -f "$PIDFILE"; fail "bad pidfile $PIDFILE" ;; esac

if ! is_weed "$PID"; then
    say "pid $PID is not a running weed process; removing stale pidfile"
    rm -f "$PIDFILE"
    exit 0
fi
kill -TERM "$PID"
for _ in $(seq 1 $((WAIT_S * 10))); do
    is_weed "$PID" || break
    sleep 0.1
done
if is_weed "$PID"; then
    kill -KILL "$PID"
fi
rm -f "$PIDFILE" "$DIR/s3.endpoint"
echo "stopped weed pid $PID"
