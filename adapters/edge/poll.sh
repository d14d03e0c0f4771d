#!/bin/sh
# $1 run folder, $2 the reaper script (reap.sh), $3 grace and $4 exit wait (0.1 s), then
# attempt ids: one line each, `id TAB word TAB markers TAB result.json on one line` (for gone:
# the runtime's last words, see last_words), the word one of unknown, starting, running, gone,
# result.

# shellcheck source=SCRIPTDIR/lib.sh
. "${0%/*}/lib.sh"
base=$1; reaper=$2; grace=$3; exitwait=$4; shift 4
now=$(date +%s)
for id in "$@"; do
  d=$base/$id
  if [ ! -e "$d/spawned" ]; then printf '%s\tunknown\t\t\n' "$id"; continue; fi
  marks=
  for m in cancelled preempted walltime; do [ -e "$d/$m" ] && marks=$marks$m,; done
  run=0; runtime_alive "$d" && run=1
  { read -r _a _b t0 < "$d/spawned"; } 2>/dev/null
  case $t0 in ''|*[!0-9]*) t0=0;; esac
  if [ -e "$d/result.json" ]; then
    if [ "$run" = 1 ]; then
      [ -e "$d/reaping" ] || { : > "$d/reaping"; reap "$d" "$id" "$exitwait"; }
    elif [ ! -e "$d/reaped" ]; then
      kill_group "$d" "$id"; : > "$d/reaped"
    fi
    printf '%s\tresult\t%s\t' "$id" "$marks"; tr -d '\n' < "$d/result.json"; echo
  elif [ "$run" = 1 ] && [ -e "$d/pid" ]; then
    { read -r _c _m _g wt < "$d/resources"; } 2>/dev/null
    case $wt in ''|*[!0-9]*) wt=;; esac
    if [ -n "$wt" ] && [ ! -e "$d/preempted" ] && [ $((now - t0)) -gt "$wt" ]; then
      echo "$now" > "$d/walltime"; echo "$now" > "$d/preempted"
      group_of "$d" && kill -TERM "-$pg" 2>/dev/null
      reap "$d" "$id" "$grace"
      marks=${marks}preempted,walltime,
    fi
    printf '%s\trunning\t%s\t\n' "$id" "$marks"
  elif [ "$run" = 1 ] || [ $((now - t0)) -lt 3 ]; then
    printf '%s\tstarting\t%s\t\n' "$id" "$marks"
  else
    printf '%s\tgone\t%s\t%s\n' "$id" "$marks" "$(last_words "$d")"
  fi
done
