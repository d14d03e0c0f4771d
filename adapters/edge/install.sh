#!/bin/sh
# $1 base interpreter, $2 the venv, $3 the node's wheelhouse, $4 the pip wheel in it (run from
# the wheel itself, so the base needs neither pip nor ensurepip), $5 the requirement
# (`gridbridge==X`), $6 the runtime's interpreter, $7 the version wanted. One bootstrap at a
# time per venv (a lock folder beside it): a node that shares the filesystem with one that
# just installed it finds it there. Prints `already` or `installed`.
# Exit 3: a folder that is not a venv is in the way; 4: no lock or no venv; 5: pip failed.

base=$1; venv=$2; wh=$3; pipwhl=$4; req=$5; py=$6; want=$7
not_venv() {
  [ -e "$venv" ] && [ ! -e "$venv/pyvenv.cfg" ] && [ -n "$(ls -A -- "$venv" 2>/dev/null)" ]
}
if not_venv; then echo "$venv exists and is not a virtual environment: refusing to touch it" >&2
  exit 3; fi
lock=$venv.gridbridge-bootstrap-lock
mkdir -p -- "${venv%/*}" || exit 4
n=0
until mkdir -- "$lock" 2>/dev/null; do
  n=$((n + 1))
  if [ "$n" -gt 600 ]; then
    echo "$lock held for 10 minutes (remove it if no bootstrap runs)" >&2; exit 4
  fi
  sleep 1
done
trap 'rmdir -- "$lock" 2>/dev/null' EXIT
code='import gridbridge; print(gridbridge.__version__)'
if [ "$("$py" -c "$code" 2>/dev/null)" = "$want" ]; then echo already; exit 0; fi
if not_venv; then echo "$venv exists and is not a virtual environment: refusing to touch it" >&2
  exit 3; fi
if [ ! -e "$venv/pyvenv.cfg" ] || [ ! -x "$venv/bin/python" ]; then
  "$base" -m venv --without-pip "$venv" || { echo "$base -m venv $venv failed" >&2; exit 4; }
fi
"$venv/bin/python" "$wh/$pipwhl/pip" install --no-index --find-links "$wh" --no-cache-dir \
  --disable-pip-version-check --no-warn-script-location --quiet "$req" pip || exit 5
echo installed
