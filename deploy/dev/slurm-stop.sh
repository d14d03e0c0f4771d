#!/usr/bin/env bash
# slurm-stop.sh: stop what slurm-start.sh started. Cancels the cluster's jobs first, then stops
# each daemon by the pid in its pidfile, after checking that the pid runs that daemon's binary
# (never by process name). Idempotent. GB_SLURM_KEEP_MUNGE=1 leaves munged running.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" = 0 ] || fail "run as root"
RUN=/run/slurm

mkdir -p /run/lock
exec 9>/run/lock/gridbridge-slurm.lock
flock -w 300 9 || fail "/run/lock/gridbridge-slurm.lock is held"

if running $RUN/slurmctld.pid /usr/sbin/slurmctld; then
  mapfile -t jobs < <(squeue -h -o '%i' 2>/dev/null)
  if [ ${#jobs[@]} -gt 0 ]; then
    scancel "${jobs[@]}" 2>/dev/null || true
    for _ in $(seq 150); do [ -z "$(squeue -h -o '%i' 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi
for f in "$RUN"/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f" /usr/sbin/slurmd; done
stop_pidfile $RUN/slurmctld.pid /usr/sbin/slurmctld
[ "${GB_SLURM_KEEP_MUNGE:-0}" = 1 ] || stop_pidfile /run/munge/munged.pid /usr/sbin/munged
exit 0
