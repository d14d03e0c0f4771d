#!/usr/bin/env bash
# edge-stop.sh STATE_DIR: take down the edge fleet that edge-start.sh made in STATE_DIR.
# Only what STATE_DIR/nodes.json records is touched: each node's sshd is stopped by its pidfile
# (after checking that the pid runs /usr/sbin/sshd inside that node's namespace; never by name),
# then whatever still runs in the node's namespace (sessions, their commands), then its veth and
# its namespace are deleted. The safety route goes when no 10.213.x address is left on the host
# and edge-start.sh had added it. Keys and logs stay in STATE_DIR. Idempotent: exit 0 when there
# is nothing to stop.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 1 ] || { say "usage: edge-stop.sh STATE_DIR"; exit 2; }
[ -d "$1" ] || { say "no $1: nothing to stop"; exit 0; }
DIR=$(cd "$1" && pwd)
[ "$(id -u)" = 0 ] || { say "ERROR: needs root"; exit 1; }
SAFETY=(unreachable 10.213.0.0/16)  # (see edge-start.sh)
SHARED=/run/gridbridge-edge
[ -s "$DIR/nodes.json" ] || { say "no $DIR/nodes.json: nothing to stop"; exit 0; }

mkdir -p "$SHARED"
exec 9>"$SHARED/lock"
flock -w 120 9 || { say "ERROR: another edge-start/edge-stop holds $SHARED/lock"; exit 1; }

mapfile -t rows < <(nodes_tsv "$DIR/nodes.json")
stopped=0 trouble=0
for row in "${rows[@]}"; do
  IFS=$'\t' read -r _ _ _ ns pidfile hv <<<"$row"
  if [ -e "/run/netns/$ns" ]; then
    # 1. sshd by its pidfile: TERM, then KILL.
    if pid=$(sshd_pid "$pidfile" "$ns"); then
      kill -TERM "$pid" 2>/dev/null
      wait_gone "$pid" || kill -KILL "$pid" 2>/dev/null
      stopped=$((stopped + 1))
    fi
    # 2. Whatever else still runs in the node (sessions and their commands): they are the node.
    mapfile -t rest < <(ip netns pids "$ns" 2>/dev/null)
    if [ ${#rest[@]} -gt 0 ]; then
      kill -TERM "${rest[@]}" 2>/dev/null
      wait_gone "${rest[@]}" || { kill -KILL "${rest[@]}" 2>/dev/null; wait_gone "${rest[@]}"; }
      stopped=$((stopped + ${#rest[@]}))
    fi
    # 3. The veth (both ends go together), then the namespace.
    ip link del "$hv" 2>/dev/null
    if ip netns del "$ns"; then rm -f "$SHARED/owner.$ns"
    else say "cannot delete netns $ns"; trouble=1; fi
  elif ip link show dev "$hv" >/dev/null 2>&1; then
    say "link $hv exists but netns $ns does not: not ours, left alone"
  fi
  rm -f "$pidfile"
done

# The safety route: only when edge-start.sh added it and no fleet address is left.
# (read first, then one awk: an early-exiting grep -q in a pipe fails it with SIGPIPE)
if addrs=$(ip -o -4 addr show) && [ -e "$SHARED/safety-route" ] \
    && ! awk '$4 ~ /^10\.213\./ {found = 1} END {exit !found}' <<<"$addrs"; then
  ip route del "${SAFETY[@]}" metric 4000 2>/dev/null
  rm -f "$SHARED/safety-route"
fi
if [ $trouble = 0 ]; then
  rm -f "$DIR/nodes.json" "$DIR/known_hosts"
fi
say "stopped $stopped process(es) of ${#rows[@]} node(s) in $DIR"
exit $trouble
