#!/usr/bin/env bash
# federation-up.sh [STATE_DIR]: every tier of gridbridge on this one machine, at once, and one
# gridbridge.yaml naming them all, with checkpoints on the S3 store. Root only (Slurm, network
# namespaces, an address). Reuses the dev scripts (each idempotent, each stopping by pid):
#
#   laptop    local      the runtime as a child of the control plane
#   cluster   slurm      slurm-start.sh: partitions scavenger (preemptible, cheap) and normal
#   spot      ec2spot    ec2-emulator.py: moto's EC2 API, instances that boot, IMDS notices
#   edge      edge       edge-start.sh: three sshd nodes in network namespaces (.peers/edge)
#   storage   s3         s3-start.sh (SeaweedFS on 127.0.0.1) + s3-share-start.sh: the same
#                        store as http://10.213.0.1:8433 for every tier, edge nodes included
#
# STATE_DIR (default .peers/federation) gets gridbridge.yaml, env (the variables the control
# plane needs: `. STATE_DIR/env`), ec2/ (the emulation's pid, endpoint, interrupt/ inbox) and
# run/ (the control plane's workdir). The edge fleet, S3 store and share keep their own
# folders under .peers, the ones the tests use, so a test session finds them up and leaves
# them be. Idempotent: run again, it keeps what runs and repairs what does not. Prints the path
# of gridbridge.yaml. Stop everything with federation-down.sh STATE_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

REPO=$(cd "$HERE/../.." && pwd)
PEERS=$REPO/.peers
mkdir -p "${1:-$PEERS/federation}"
FED=$(cd "${1:-$PEERS/federation}" && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
# Absolute, but not resolved: a venv's python is a link whose target would lose the venv. Every
# tier's runtime starts it, from folders of their own (make passes .venv/bin/python).
case $PY in /*) ;; */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;;
  *) PY=$(command -v "$PY") ;; esac
[ "$(id -u)" = 0 ] || fail "needs root (Slurm, network namespaces, an address)"
BUCKET=gridbridge-federation

say "slurm"
bash "$HERE/slurm-start.sh" >&2
say "edge fleet"
NODES=$(bash "$HERE/edge-start.sh" "$PEERS/edge" 3)
say "S3 store"
PYTHON=$PY bash "$HERE/s3-start.sh" "$PEERS/s3" >/dev/null
S3=$(PYTHON=$PY bash "$HERE/s3-share-start.sh" "$PEERS/s3-share")

say "EC2 emulation"
mkdir -p "$FED/ec2"
if ! forward_pid "$FED/ec2/emulator.pid" "$HERE/ec2-emulator.py" >/dev/null \
    || [ ! -s "$FED/ec2/endpoint" ]; then
  rm -f "$FED/ec2/emulator.pid" "$FED/ec2/endpoint"
  nohup "$PY" "$HERE/ec2-emulator.py" "$FED/ec2" >"$FED/ec2/emulator.log" 2>&1 </dev/null &
  echo $! >"$FED/ec2/emulator.pid"
  for _ in $(seq 300); do
    [ -s "$FED/ec2/endpoint" ] && break
    alive "$(cat "$FED/ec2/emulator.pid")" || fail "the EC2 emulation exited: $(tail -5 "$FED/ec2/emulator.log")"
    sleep 0.1
  done
  [ -s "$FED/ec2/endpoint" ] || fail "the EC2 emulation did not answer in 30 s"
fi

# What the control plane (and, through runtime.env_names, every runtime) needs. The values are
# the dev store's and the emulation's throwaway ones; a real federation points these names at
# credential files or roles instead.
cat >"$FED/env" <<EOF
export FSSPEC_S3_ENDPOINT_URL=$S3
export FSSPEC_S3_KEY=gridbridge
export FSSPEC_S3_SECRET=gridbridge
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
export GRIDBRIDGE_CONFIG=$FED/gridbridge.yaml
EOF
chmod 600 "$FED/env"

"$PY" - "$FED" "$NODES" "$PEERS/edge" "$(cat "$FED/ec2/endpoint")" \
  "$(cat "$FED/ec2/image-id")" "$REPO/tests/data/ec2" "$PY" "$BUCKET" <<'PYEOF'
import json, sys
from pathlib import Path
import yaml
fed, nodes, edge, ec2, image, data, py, bucket = sys.argv[1:]
# how the runtime reaches the store, and the numeric libraries' settings: a job resumed on
# another tier computes bit for bit as before only with the same BLAS kernel and threads (an
# SSH session or an instance starts without this shell's OPENBLAS_CORETYPE)
names = ["FSSPEC_S3_ENDPOINT_URL", "FSSPEC_S3_KEY", "FSSPEC_S3_SECRET",
         "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
         "NVPL_BLAS_DEBUG_CPU_TYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS"]
runtime = {"python": py, "env_names": names, "heartbeat_s": 1}
sites = [
    {"name": "laptop", "adapter": "local", "tier": "edge", "capacity": {"cpus": 2},
     "price": {"per_core_hour": 0.08}, "runtime": runtime},
    {"name": "cluster", "adapter": "slurm", "tier": "hpc", "capacity": {"cpus": 12},
     "uncertain_submit": "replace", "restart_overhead_s": 5,
     "runtime": {**runtime, "shared_filesystem": True},
     "options": {"partitions": {
         "scavenger": {"price": {"per_core_hour": 0.01}, "preemptible": True,
                       "preemption_rate_per_hour": 0.5},
         "normal": {"price": {"per_core_hour": 0.05}}}}},
    {"name": "spot", "adapter": "ec2spot", "tier": "cloud", "capacity": {"cpus": 16},
     "preemptible": True, "restart_overhead_s": 5, "runtime": runtime,
     "options": {"endpoint_url": ec2, "image_id": image, "instance_types": ["c5.large"],
                 "zones": ["us-east-1a", "us-east-1b"], "imds_poll_s": 0.5,
                 "on_demand_prices": f"{data}/ondemand-prices-us-east-1-2019-04.csv",
                 "spot_advisor": f"{data}/spot-advisor-us-east-1-2021-02.json"}},
    {"name": "edge", "adapter": "edge", "tier": "edge", "capacity": {"cpus": 6},
     "preemptible": True, "restart_overhead_s": 2, "runtime": runtime,
     "options": {"nodes": [{"name": n["name"], "host": n["address"], "port": n["port"],
                            "cpus": 2, "cost_per_hour": 0.02}
                           for n in json.loads(Path(nodes).read_text())],
                 "key_file": f"{edge}/client_key", "known_hosts": f"{edge}/known_hosts",
                 "remote_dir": f"{fed}/edge-runs", "lost_after_s": 3, "grace_s": 2}},
]
config = {"state_url": f"sqlite:///{fed}/state.db", "workdir": f"{fed}/run",
          "checkpoint_root": f"s3://{bucket}/checkpoints", "sites": sites}
Path(fed, "gridbridge.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
PYEOF

# the bucket, through the shared name (what every tier will use)
# shellcheck disable=SC1091 # written just above
( . "$FED/env" && "$PY" -c '
import sys, fsspec
fs = fsspec.filesystem("s3", skip_instance_cache=True)
fs.exists(sys.argv[1]) or fs.mkdir(sys.argv[1])' "$BUCKET" )
say "up: . $FED/env, then gridbridge config check / sites list"
echo "$FED/gridbridge.yaml"
