#!/bin/sh
# The node's size and load: `nproc N`, `memavail KIB`, `memtotal KIB`, `load L1`.

echo "nproc $(nproc)"
while read -r k v _; do
  case $k in MemAvailable:) echo "memavail $v";; MemTotal:) echo "memtotal $v";; esac
done < /proc/meminfo
read -r l1 _ < /proc/loadavg; echo "load $l1"
