#!/bin/sh
# $1 the node's wheelhouse (made if missing): `name TAB size` per wheel there.

mkdir -p -- "$1" || exit 4
for f in "$1"/*.whl; do
  [ -f "$f" ] && printf '%s\t%s\n' "${f##*/}" "$(wc -c < "$f")"
done
exit 0
