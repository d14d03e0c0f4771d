#!/usr/bin/env bash
# federation-down.sh [STATE_DIR]: stop everything federation-up.sh started, each part by its
# own stop script (by pidfile, never by name): the EC2 emulation (which kills its instances
# first), the S3 share and store, the edge fleet (sshds, whatever ran in their namespaces,
# the namespaces), Slurm (its jobs cancelled first). Leaves no process, namespace or emulated
# instance; keeps the state folders (keys, logs, the store's data, gridbridge.yaml).
# Idempotent: exit 0 when nothing runs.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

REPO=$(cd "$HERE/../.." && pwd)
PEERS=$REPO/.peers
FED=${1:-$PEERS/federation}

if pid=$(forward_pid "$FED/ec2/emulator.pid" "$HERE/ec2-emulator.py"); then
  say "stopping the EC2 emulation (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do alive "$pid" || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$FED/ec2/emulator.pid"
bash "$HERE/s3-share-stop.sh" "$PEERS/s3-share"
bash "$HERE/s3-stop.sh" "$PEERS/s3" >&2
bash "$HERE/edge-stop.sh" "$PEERS/edge" >&2
bash "$HERE/slurm-stop.sh" >&2
say "down"
