#!/bin/sh
# $1 the runtime's interpreter: what meminfo.sh prints, then `versions PYTHON GRIDBRIDGE` or
# `python-error WHY`.

# shellcheck source=SCRIPTDIR/meminfo.sh
. "${0%/*}/meminfo.sh"
code='import sys, gridbridge; print(sys.version.split()[0], gridbridge.__version__)'
if out=$("$1" -c "$code" 2>&1); then echo "versions $out"
else echo "python-error $(printf '%s\n' "$out" | tail -n 1)"; fi
