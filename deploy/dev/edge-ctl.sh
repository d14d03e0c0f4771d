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
say() { printf 'edge-ctl: %s\n' "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

[ $# -eq 3 ] || fail "usage: edge-ctl.sh STATE_DIR partition|heal|crash|restart NODE"
[ -d "$1" ] || fail "no such STATE_DIR: $1"
DIR=$(cd "$1" && pwd)
ACTION=$2
NODE=$3
[[ $NODE =~ ^[0-9]+$ ]] && NODE=edge$NODE
SSHD=/usr/sbin/sshd
SAFETY="unreachable 10.213.0.0/16"
[ -s "$DIR/nodes.json" ] || fail "no $DIR/nodes.json: start the fleet with edge-start.sh"

row=$(sed -n 's/^ *{"name": "\([^"]*\)", "address": "\([^"]*\)", "port": \([0-9]*\), "netns": "\([^"]*\)", "pidfile": "\([^"]*\)", "host_veth": "\([^"]*\)"}.*$/\1\t\2\t\3\t\4\t\5\t\6/p' \
  "$DIR/nodes.json" | awk -F'\t' -v n="$NODE" '$1 == n')
[ -n "$row" ] || fail "no node $NODE in $DIR/nodes.json"
IFS=$'\t' read -r name addr port ns pidfile hv <<<"$row"
[ -e "/run/netns/$ns" ] || fail "netns $ns of $name is gone: run edge-start.sh $DIR again"

netns_inode() { stat -L -c %i "/run/netns/$1" 2>/dev/null; }
sshd_pid() {  # the pid in $pidfile, if it runs sshd inside $ns
  local pid
  pid=$(tr -dc 0-9 2>/dev/null <"$pidfile") || return 1
  [ -n "$pid" ] || return 1
  [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$SSHD")" ] || return 1
  [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "net:[$(netns_inode "$ns")]" ] || return 1
  echo "$pid"
}
alive() {  # exists and is not a zombie
  [ -r "/proc/$1/stat" ] && ! awk '{exit ($3 == "Z") ? 0 : 1}' "/proc/$1/stat" 2>/dev/null
}
banner_ok() {
  local got
  got=$(ip netns exec "$ns" timeout 2 bash -c "exec 3<>/dev/tcp/$addr/$port && head -c 7 <&3" 2>/dev/null) \
    && [ "$got" = "SSH-2.0" ]
}

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
    if pid=$(sshd_pid); then victims+=("$pid"); fi
    while read -r p; do
      [ -n "$p" ] && [ "$p" != "${victims[0]:-}" ] && victims+=("$p")
    done < <(ip netns pids "$ns" 2>/dev/null)
    [ ${#victims[@]} -gt 0 ] && kill -KILL "${victims[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      left=0
      for p in "${victims[@]}"; do alive "$p" && left=1; done
      [ $left = 0 ] && break
      sleep 0.1
    done
    [ $left = 0 ] || fail "processes of $name outlived SIGKILL: ${victims[*]}"
    rm -f "$pidfile"
    say "$name ($addr) crashed: killed ${#victims[@]} process(es)"
    ;;
  restart)
    if pid=$(sshd_pid); then
      say "$name ($addr): sshd already runs (pid $pid)"
    else
      conf=$(dirname "$pidfile")/sshd_config
      [ -s "$conf" ] || fail "no $conf: run edge-start.sh $DIR again"
      rm -f "$pidfile"
      ip netns exec "$ns" "$SSHD" -f "$conf" -E "$(dirname "$pidfile")/sshd.log" </dev/null
    fi
    for _ in $(seq 100); do
      sshd_pid >/dev/null && banner_ok && { say "$name ($addr) restarted"; exit 0; }
      sleep 0.1
    done
    fail "$name's sshd did not come back; see $(dirname "$pidfile")/sshd.log"
    ;;
  *) fail "action must be partition, heal, crash or restart" ;;
esac
