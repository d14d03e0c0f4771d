#!/bin/sh
# $1 run folder: what meminfo.sh prints, then `busy RESOURCES` per live attempt there.

# shellcheck source=SCRIPTDIR/lib.sh
. "${0%/*}/lib.sh"
# shellcheck source=SCRIPTDIR/meminfo.sh
. "${0%/*}/meminfo.sh"
for d in "$1"/*; do
  { [ -e "$d/resources" ] && [ ! -e "$d/result.json" ] && runtime_alive "$d"; } || continue
  { read -r r < "$d/resources"; } 2>/dev/null && echo "busy $r"
done
