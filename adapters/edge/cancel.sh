#!/bin/sh
# $1 run folder, $2 the reaper script (reap.sh), $3 grace (0.1 s), then attempt ids: a
# `cancelled` marker, SIGTERM to the group, a reaper for the rest. A repeated cancel past the
# grace period kills at once (the reaper may have died).

# shellcheck source=SCRIPTDIR/lib.sh
. "${0%/*}/lib.sh"
base=$1; reaper=$2; grace=$3; shift 3
now=$(date +%s)
for id in "$@"; do
  d=$base/$id
  [ -e "$d/spawned" ] || continue
  if ! runtime_alive "$d"; then kill_group "$d" "$id"; continue; fi
  [ -e "$d/result.json" ] && continue
  if [ -e "$d/cancelled" ]; then
    { read -r t < "$d/cancelled"; } 2>/dev/null
    case $t in ''|*[!0-9]*) t=0;; esac
    [ $(( (now - t) * 10 )) -gt "$grace" ] && kill_group "$d" "$id"
    continue
  fi
  echo "$now" > "$d/cancelled"
  group_of "$d" && kill -TERM "-$pg" 2>/dev/null
  reap "$d" "$id" "$grace"
done
