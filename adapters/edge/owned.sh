#!/bin/sh
# $1 run folder, $2 federation tag: `id TAB running|orphaned-children` for each attempt folder
# of this federation with a live process.

# shellcheck source=SCRIPTDIR/lib.sh
. "${0%/*}/lib.sh"
base=$1; tag=$2
for d in "$base"/*; do
  [ -e "$d/owner" ] || continue
  { read -r id t < "$d/owner"; } 2>/dev/null || continue
  { [ "$t" = "$tag" ] && [ "${d##*/}" = "$id" ]; } || continue
  if runtime_alive "$d"; then
    printf '%s\trunning\n' "$id"
  elif [ -e "$d/spawned" ] && group_of "$d" && group_alive "$pg" "$id"; then
    printf '%s\torphaned-children\n' "$id"
  fi
done
