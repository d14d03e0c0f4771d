#!/usr/bin/env bash
# edge-ctl.sh STATE_DIR partition|heal|crash|restart NODE: break or mend one node of the edge
# fleet that edge-start.sh made in STATE_DIR. NODE is a name from nodes.json (edge2) or its
# number (2). Acts only on what nodes.json records.
#
#   partition  the host side of the node's veth goes down: the node and everything running on it
#              keep going, but no packet passes either way any more (a silent partition, like a
#              dead WAN link). Refused unless the safety route (see edge-start.sh) is in place,
#              so traffic for the node cannot leave the machine by the default route.
#   heal       that link comes up again (its connected route comes back with it).
#   crash      the node dies: its sshd, found by its pidfile and checked to run /usr/sbin/sshd
#              inside the node's namespace, is killed with SIGKILL, and so is every other
#              process in that namespace (open sessions and the commands they run), as a power
#              cut would. Waits until they are gone.
#   restart    the node's sshd starts again with the same config and host key (a no-op when it
#              runs); waits until it answers with an SSH banner.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 3 ] || fail "usage: edge-ctl.sh STATE_DIR partition|heal|crash|restart NODE"
[ -d "$1" ] || fail "no such STATE_DIR: $1"
DIR=$(cd "$1" && pwd)
ACTION=$2
NODE=$3
[[ $NODE =~ ^[0-9]+$ ]] && NODE=edge$NODE
SSHD=/usr/sbin/sshd
SAFETY="unreachable 10.213.0.0/16"  # (see edge-start.sh)
[ -s "$DIR/nodes.json" ] || fail "no $DIR/nodes.json: start the fleet with edge-start.sh"

row=$(nodes_tsv "$DIR/nodes.json" | awk -F'\t' -v n="$NODE" '$1 == n')
[ -n "$row" ] || fail "no node $NODE in $DIR/nodes.json"
IFS=$'\t' read -r name addr port ns pidfile hv <<<"$row"
[ -e "/run/netns/$ns" ] || fail "netns $ns of $name is gone: run edge-start.sh $DIR again"

case $ACTION in
  partition)
    routes=$(ip route show table main)  # (no grep -q in a pipe: SIGPIPE + pipefail)
    grep -q "^$SAFETY " <<<"$routes" \
      || fail "the safety route '$SAFETY' is missing: refusing to take $hv down (run edge-start.sh $DIR)"
    ip link set "$hv" down
    say "$name ($addr) partitioned: $hv down"
    ;;
  heal)
    ip link set "$hv" up
    say "$name ($addr) healed: $hv up"
    ;;
  crash)
    victims=()
    if pid=$(sshd_pid "$pidfile" "$ns"); then victims+=("$pid"); fi
    while read -r p; do
      [ -n "$p" ] && [ "$p" != "${victims[0]:-}" ] && victims+=("$p")
    done < <(ip netns pids "$ns" 2>/dev/null)
    if [ ${#victims[@]} -gt 0 ]; then kill -KILL "${victims[@]}" 2>/dev/null || true; fi
    wait_gone "${victims[@]}" || fail "processes of $name outlived SIGKILL: ${victims[*]}"
    rm -f "$pidfile"
    say "$name ($addr) crashed: killed ${#victims[@]} process(es)"
    ;;
  restart)
    if pid=$(sshd_pid "$pidfile" "$ns"); then
      say "$name ($addr): sshd already runs (pid $pid)"
    else
      conf=$(dirname "$pidfile")/sshd_config
      [ -s "$conf" ] || fail "no $conf: run edge-start.sh $DIR again"
      rm -f "$pidfile"
      start_test_sshd "$SSHD" "$conf" "$(dirname "$pidfile")/sshd.log" "$ns"
    fi
    for _ in $(seq 100); do
      sshd_pid "$pidfile" "$ns" >/dev/null && banner_ok "$ns" "$addr" "$port" && { say "$name ($addr) restarted"; exit 0; }
      sleep 0.1
    done
    fail "$name's sshd did not come back; see $(dirname "$pidfile")/sshd.log"
    ;;
  *) fail "action must be partition, heal, crash or restart" ;;
esac
