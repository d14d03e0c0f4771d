#!/usr/bin/env bash
# slurm-stop.sh: stop what slurm-start.sh started. Cancels the cluster's jobs first, then stops
# each daemon by the pid in its pidfile, after checking that the pid runs that daemon's binary
# (never by process name). Idempotent. GB_SLURM_KEEP_MUNGE=1 leaves munged running.
set -uo pipefail
say() { printf 'slurm-stop: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "ERROR: run as root"; exit 1; }
RUN=/run/slurm

mkdir -p /run/lock
exec 9>/run/lock/gridbridge-slurm.lock
flock -w 300 9 || { say "ERROR: /run/lock/gridbridge-slurm.lock is held"; exit 1; }

running() {
  local pid exe
  pid=$(tr -dc 0-9 2>/dev/null <"$1") || return 1
  [ -n "$pid" ] || return 1
  exe=$(readlink -f "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "$exe" = "$(readlink -f "$2")" ]
}

stop_pidfile() {
  local pid
  running "$1" "$2" || { rm -f "$1"; return 0; }
  pid=$(tr -dc 0-9 < "$1")
  say "stopping $(basename "$2") (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

if running $RUN/slurmctld.pid /usr/sbin/slurmctld; then
  mapfile -t jobs < <(squeue -h -o '%i' 2>/dev/null)
  if [ ${#jobs[@]} -gt 0 ]; then
    scancel "${jobs[@]}" 2>/dev/null || true
    for _ in $(seq 150); do [ -z "$(squeue -h -o '%i' 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi
for f in $RUN/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f" /usr/sbin/slurmd; done
stop_pidfile $RUN/slurmctld.pid /usr/sbin/slurmctld
[ "${GB_SLURM_KEEP_MUNGE:-0}" = 1 ] || stop_pidfile /run/munge/munged.pid /usr/sbin/munged
exit 0
