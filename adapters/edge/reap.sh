#!/bin/sh
# Detached: wait ($3 tenths of a second at most) for the runtime, then kill the rest.
# $1 the attempt's folder, $2 the attempt id, $3 the wait.

# shellcheck source=SCRIPTDIR/lib.sh
. "${0%/*}/lib.sh"
n=0
while [ "$n" -lt "$3" ] && runtime_alive "$1"; do sleep 0.1; n=$((n + 1)); done
kill_group "$1" "$2"
