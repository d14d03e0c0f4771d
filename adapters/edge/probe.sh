#!/bin/sh
# $1 the runtime's interpreter, $2 the base interpreter for the venv, $3 the venv:
# `have VERSION` or `missing WHY`, `base IMPL X.Y PLATFORM` or `nobase WHY`, then
# `venv yes|absent|other` (other: something that is not a venv is in the way).

code='import gridbridge; print(gridbridge.__version__)'
if out=$("$1" -c "$code" 2>&1); then echo "have $(printf '%s\n' "$out" | tail -n 1)"
else echo "missing $(printf '%s\n' "$out" | tail -n 1)"; fi
tag='import sys, sysconfig
print(sys.implementation.name, "%d.%d" % sys.version_info[:2], sysconfig.get_platform())'
if out=$("$2" -c "$tag" 2>&1); then echo "base $out"
else echo "nobase $(printf '%s\n' "$out" | tail -n 1)"; fi
if [ -e "$3/pyvenv.cfg" ]; then echo "venv yes"
elif [ ! -e "$3" ] || { [ -d "$3" ] && [ -z "$(ls -A -- "$3" 2>/dev/null)" ]; }; then
  echo "venv absent"
else echo "venv other"; fi
