#!/bin/sh
# Base64 on stdin -> $1 (through `$1.part-$4`, $4 the node, so nodes that share a filesystem
# never write one file together): $2 `first`/`more`, $3 `last`/`more`.

part=$1.part-$4
if [ "$2" = first ]; then base64 -d > "$part" || exit 4
else base64 -d >> "$part" || exit 4; fi
if [ "$3" = last ]; then mv -f -- "$part" "$1" || exit 4; fi
