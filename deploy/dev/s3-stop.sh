#!/usr/bin/env bash
# Stop the SeaweedFS gateway that s3-start.sh started in STATE_DIR: by its pidfile only.
#
# Usage: s3-stop.sh STATE_DIR
# Checks that the pid still runs a weed binary before signalling it (a recycled pid is left
# alone), sends TERM, waits up to S3_STOP_WAIT_S seconds (default 20), then KILL. Data stays in
# STATE_DIR/data. Exit 0 also when nothing was running.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 STATE_DIR" >&2
    exit 2
fi
DIR=$1
WAIT_S=${S3_STOP_WAIT_S:-20}
PIDFILE="$DIR/s3.pid"
[ -f "$PIDFILE" ] || { echo "no pidfile at $PIDFILE; nothing to stop" >&2; exit 0; }
PID=$(cat "$PIDFILE")
case "$PID" in ''|*[!0-9]*) echo "bad pidfile $PIDFILE" >&2; rm -f "$PIDFILE"; exit 1 ;; esac

is_weed() {
    local exe
    [ -d "/proc/$PID" ] || return 1
    exe=$(readlink "/proc/$PID/exe" 2>/dev/null || true)
    [ "$(basename "${exe%% (deleted)}")" = "weed" ] && return 0
    tr '\0' ' ' <"/proc/$PID/cmdline" 2>/dev/null | grep -q '^[^ ]*weed mini' && return 0
    return 1
}

if ! is_weed; then
    echo "pid $PID is not a running weed process; removing stale pidfile" >&2
    rm -f "$PIDFILE"
    exit 0
fi
kill -TERM "$PID"
for _ in $(seq 1 $((WAIT_S * 10))); do
    is_weed || break
    sleep 0.1
done
if is_weed; then
    kill -KILL "$PID"
fi
rm -f "$PIDFILE" "$DIR/s3.endpoint"
echo "stopped weed pid $PID"
