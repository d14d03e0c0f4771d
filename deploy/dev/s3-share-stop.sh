#!/usr/bin/env bash
# s3-share-stop.sh STATE_DIR: undo s3-share-start.sh: stop its forwarder (by its pidfile, only
# while that pid still runs tcp-forward.py) and remove the address it added to lo (only that).
# Exit 0 also when nothing was running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ $# -ne 1 ]; then fail "usage: s3-share-stop.sh STATE_DIR"; fi
DIR=$1
FORWARD=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tcp-forward.py
if pid=$(forward_pid "$DIR/forward.pid" "$FORWARD"); then
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
  say "stopped the forwarder (pid $pid)"
fi
rm -f "$DIR/forward.pid" "$DIR/endpoint"
if [ -s "$DIR/address-added" ]; then
  ADDRESS=$(cat "$DIR/address-added")
  ip addr del "$ADDRESS/32" dev lo 2>/dev/null || true
  rm -f "$DIR/address-added"
fi
