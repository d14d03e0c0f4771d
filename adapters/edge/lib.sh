#!/bin/sh
# The functions the node scripts share (POSIX sh, dash). The loader puts this file in place of
# the `. "${0%/*}/lib.sh"` line of a script that sources it, so a node needs no file of ours.
# A process belongs to an attempt when it is in the runtime's process group AND carries its
# tag (GRIDBRIDGE_ATTEMPT_ID), so a process group id reused by strangers is never signalled.
# group_of sets `pg`; reap runs `$reaper`, which the sourcing script sets (reap.sh's text).

# alive PIDFILE: the process "PID STARTTIME" names still runs (same start time, no zombie).
alive() {
  { read -r _p _s _x < "$1"; } 2>/dev/null || return 1
  case $_p in ''|*[!0-9]*) return 1;; esac
  { read -r _st < "/proc/$_p/stat"; } 2>/dev/null || return 1
  # Split on purpose: the fields of /proc/PID/stat after the command name.
  # shellcheck disable=SC2086
  set -- ${_st##*) }
  [ "$1" != Z ] && [ "$1" != X ] && [ -n "$_s" ] && [ "${20:-}" = "$_s" ]
}
runtime_alive() {
  if [ -e "$1/pid" ]; then alive "$1/pid"; else alive "$1/spawned"; fi
}
group_of() {
  for _f in "$1/pid" "$1/spawned"; do
    { read -r pg _r < "$_f"; } 2>/dev/null || continue
    case $pg in ''|*[!0-9]*|0|1) continue;; esac
    return 0
  done
  return 1
}
group_alive() {
  kill -0 "-$1" 2>/dev/null || return 1
  for _f in /proc/[0-9]*/stat; do
    { read -r _st < "$_f"; } 2>/dev/null || continue
    # shellcheck disable=SC2086
    set -- "$1" "$2" ${_st##*) }
    case $3 in Z|X) continue;; esac
    [ "$5" = "$1" ] || continue
    tr '\0' '\n' 2>/dev/null < "${_f%/stat}/environ" \
      | grep -qxF "GRIDBRIDGE_ATTEMPT_ID=$2" && return 0
  done
  return 1
}
kill_group() {
  group_of "$1" || return 0
  _n=0
  while [ "$_n" -lt 50 ] && group_alive "$pg" "$2"; do
    kill -KILL "-$pg" 2>/dev/null
    sleep 0.1
    _n=$((_n + 1))
  done
}
reap() {
  # shellcheck disable=SC2154
  setsid nohup sh -c "$reaper" gridbridge-reap "$1" "$2" "$3" </dev/null >/dev/null 2>&1 &
}
# last_words FOLDER: the last line of the runtime's log that says why it died (an exception's
# last line, or the runtime's own "cannot"/"could not"/"refusing"), tabs removed, at most 300
# characters; nothing when there is none. The same rule as gridbridge.adapters._rundir.
last_words() {
  grep -E "$LAST_WORDS" "$1/attempt.log" 2>/dev/null | tail -n 1 | tr -d '\t\r' | cut -c1-300
}
LAST_WORDS='^([A-Za-z_][A-Za-z0-9_.]*(Error|Exception)(:.*)?|gridbridge-run: (cannot|could not|refusing) .*)$'
