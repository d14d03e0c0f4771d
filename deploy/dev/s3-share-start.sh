#!/usr/bin/env bash
# s3-share-start.sh STATE_DIR [ADDRESS]: make the dev S3 gateway (s3-start.sh, on 127.0.0.1:8333)
# reachable from every tier of the dev federation under ONE name, http://ADDRESS:8433 (default
# ADDRESS 10.213.0.1): this host's jobs (local, Slurm, the EC2 emulation's instances) and every
# edge node in its network namespace (edge-start.sh routes 10.213.0.0/24, the fleet's services
# net, to the host). ADDRESS goes on `lo` as a /32 (only if no interface holds it yet; recorded
# in STATE_DIR/address-added so s3-share-stop.sh removes only what this script added), and a
# forwarder (tcp-forward.py) joins ADDRESS:8433 to 127.0.0.1:8333. Root only (an address).
# Not port 8333 itself: weed mini tests its ports on every address when it starts and moves to
# another port when one is taken, so a forwarder on ADDRESS:8333 would push a restarted store
# off the port the tests know.
#
# Idempotent: a live forwarder from STATE_DIR/forward.pid is kept. Prints the endpoint URL (also
# in STATE_DIR/endpoint). Stop with s3-share-stop.sh STATE_DIR (by pid, never by name).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then fail "usage: s3-share-start.sh STATE_DIR [ADDRESS]"; fi
ADDRESS=${2:-10.213.0.1}
[[ $ADDRESS =~ ^10\.213\.0\.([1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-4])$ ]] \
  || fail "ADDRESS must be in the fleet's services net 10.213.0.0/24"
[ "$(id -u)" = 0 ] || fail "needs root (an address on lo)"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
PY=${PYTHON:-python3}
FORWARD=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tcp-forward.py

# (read first, then match: an early-exiting grep -q in a pipe fails it with SIGPIPE)
held=$(ip -o -4 addr show | awk '{print $4}')
if ! grep -qx "$ADDRESS/[0-9]*" <<<"$held"; then
  ip addr add "$ADDRESS/32" dev lo
  echo "$ADDRESS" >"$DIR/address-added"
fi

if pid=$(forward_pid "$DIR/forward.pid" "$FORWARD"); then
  say "forwarder already running (pid $pid)"
else
  rm -f "$DIR/forward.pid"
  nohup "$PY" "$FORWARD" "$ADDRESS:8433" 127.0.0.1:8333 >"$DIR/forward.log" 2>&1 </dev/null &
  echo $! >"$DIR/forward.pid"
  for _ in $(seq 50); do
    grep -q '^forwarding' "$DIR/forward.log" 2>/dev/null && break
    alive "$(cat "$DIR/forward.pid")" || fail "the forwarder exited: $(tail -3 "$DIR/forward.log")"
    sleep 0.1
  done
fi
echo "http://$ADDRESS:8433" >"$DIR/endpoint"
echo "http://$ADDRESS:8433"
