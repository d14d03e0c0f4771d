#!/bin/sh
# $1 run folder, $2 attempt id, $3 federation tag, $4 resources line, $5 interpreter to check
# ('' = none), then the runtime's argv. Prints "adopted" or "started PID".
# Exit 3/4: nothing runs (the folder is removed). The runtime's stdout goes into its own log,
# attempt.log (owner-only), so the node keeps one copy of the output (the runtime's tee sees
# fd 1 is the log); output.log, the name older readers use, links to it.

base=$1; id=$2; tag=$3; res=$4; py=$5; shift 5
d=$base/$id
fail() { rm -rf -- "$d"; echo "$1" >&2; exit "$2"; }
mkdir -p -- "$base" || { echo "cannot create $base" >&2; exit 4; }
if ! mkdir -- "$d" 2>/dev/null; then
  [ -d "$d" ] && { echo adopted; exit 0; }
  echo "cannot create $d" >&2; exit 4
fi
if [ -n "$py" ] && ! command -v "$py" >/dev/null 2>&1; then fail "no interpreter $py" 3; fi
{ mkdir -- "$d/work" && printf '%s %s\n' "$id" "$tag" > "$d/owner" \
  && printf '%s\n' "$res" > "$d/resources" && (umask 077 && : >> "$d/attempt.log") \
  && ln -s attempt.log "$d/output.log" && cd "$d/work"; } || fail "cannot prepare $d" 4
GRIDBRIDGE_ATTEMPT_ID=$id setsid nohup "$@" </dev/null >>"$d/attempt.log" 2>&1 &
pid=$!
st=
{ read -r st < "/proc/$pid/stat"; } 2>/dev/null
# Split on purpose: the fields of /proc/PID/stat after the command name.
# shellcheck disable=SC2086
set -- ${st##*) }
printf '%s %s %s\n' "$pid" "${20:-}" "$(date +%s)" > "$d/spawned"
echo "started $pid"
