#!/usr/bin/env bash
# edge-start.sh STATE_DIR [N]: a fleet of N (default 3) real OpenSSH "edge nodes" for the tests
# of the edge adapter. Each node is a network namespace of its own with one sshd running inside
# it, reached from this host over a veth pair, so a test can cut one node's link (a silent
# partition: the node keeps running, packets vanish) or kill its sshd (a crash) while the other
# nodes stay up. Installs openssh-server and iproute2 with apt when missing (root only; a
# temporary policy-rc.d keeps the package from starting the system's sshd). Never touches the
# system's sshd or any namespace, link or address it did not make.
#
# Idempotent: run again on the same STATE_DIR, it keeps what is there and repairs what is not
# (a missing namespace or veth, a host-side link left down, a dead sshd). Prints the path of
# STATE_DIR/nodes.json. Control with edge-ctl.sh, stop with edge-stop.sh.
#
# Addressing (reserved for these tests: 10.213.0.0/16, nothing else on this machine uses it):
#   node i gets the first free /24 10.213.K.0/24 (K in 1..254, free = no host interface holds an
#   address in it): host side 10.213.K.1 on veth "<prefix><i>h", node side 10.213.K.2 on
#   "eth0" inside netns "<prefix><i>"; sshd listens on 10.213.K.2:22. A node has no default
#   route, so nothing it sends can leave its /24, but for the fleet's services net
#   10.213.0.0/24, routed to the host: an address there on this host (s3-share-start.sh puts
#   the dev S3 store on 10.213.0.1) is reached by every node under the same name. On the host, a route
#   "unreachable 10.213.0.0/16 metric 4000" (the safety route) stays under the connected routes:
#   while a host-side veth is down (a partition) its connected route is gone and traffic for
#   that node fails with "No route to host" here instead of following the default route off the
#   machine. The safety route is added once for all fleets (marker /run/gridbridge-edge/) and
#   removed by edge-stop.sh when no fleet address is left.
#
# Env: GB_EDGE_PREFIX  names of the namespaces and host-side veths (default gbfleet, 1..10 of
#                      [a-z0-9], starting with a letter); give each concurrent fleet its own.
#                      A STATE_DIR keeps the prefix it was started with.
#
# Leaves in STATE_DIR:
#   client_key (+ .pub)  the client identity for every node (ed25519, root login)
#   authorized_keys      that key, for every node's sshd
#   known_hosts          one line per node address with that node's own host key
#   nodes.json           [{"name", "address", "port", "netns", "pidfile", "host_veth"}, ...]
#                        (one node per line; edge-ctl.sh and edge-stop.sh act only on these)
#   prefix               the GB_EDGE_PREFIX of this fleet
#   edgeI/               host_key (+ .pub), sshd_config, sshd.pid, sshd.log
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then fail "usage: edge-start.sh STATE_DIR [N]"; fi
N=${2:-3}
if ! [[ $N =~ ^[1-9][0-9]?$ ]] || [ "$N" -gt 50 ]; then fail "N must be 1..50"; fi
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces, sshd with root login)"
SSHD=/usr/sbin/sshd
NET=10.213
SAFETY=(unreachable "$NET.0.0/16")
SHARED=/run/gridbridge-edge

mkdir -p "$1"
DIR=$(cd "$1" && pwd)
# Paths go into sshd_config and JSON unquoted: keep them plain.
[[ $DIR =~ ^[A-Za-z0-9._/+@,:-]+$ ]] || fail "STATE_DIR must be a plain path: $DIR"

# --- packages -----------------------------------------------------------------------------
missing=()
[ -x "$SSHD" ] && command -v ssh-keygen >/dev/null || missing+=(openssh-server)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# One fleet at a time changes addresses and the safety route (fd 9 is closed for sshd).
mkdir -p "$SHARED"
exec 9>"$SHARED/lock"
flock -w 120 9 || fail "another edge-start/edge-stop holds $SHARED/lock"

# --- prefix and what this STATE_DIR already holds -----------------------------------------
recorded_prefix=$(cat "$DIR/prefix" 2>/dev/null || true)
PREFIX=${GB_EDGE_PREFIX:-${recorded_prefix:-gbfleet}}
[[ $PREFIX =~ ^[a-z][a-z0-9]{0,9}$ ]] || fail "GB_EDGE_PREFIX must be 1..10 of [a-z0-9], a letter first"
if [ -n "$recorded_prefix" ] && [ "$recorded_prefix" != "$PREFIX" ] && [ -s "$DIR/nodes.json" ]; then
  fail "$DIR was started with prefix $recorded_prefix, not $PREFIX: stop it first (edge-stop.sh $DIR)"
fi

# nodes.json has one node a line, in the exact form write_nodes prints (read by nodes_tsv).
declare -A rec_ns=()
if [ -s "$DIR/nodes.json" ]; then
  while IFS=$'\t' read -r name _ _ ns _ _; do rec_ns[$name]=$ns; done < <(nodes_tsv "$DIR/nodes.json")
  [ ${#rec_ns[@]} -le "$N" ] \
    || fail "$DIR holds ${#rec_ns[@]} nodes, more than N=$N: stop it first (edge-stop.sh $DIR)"
fi
echo "$PREFIX" >"$DIR/prefix"

declare -a names=() addrs=()
write_nodes() {  # the nodes made so far -> nodes.json (atomically)
  local i sep
  {
    echo "["
    for i in "${!names[@]}"; do
      sep=","; [ "$i" = $((${#names[@]} - 1)) ] && sep=""
      printf '  {"name": "%s", "address": "%s", "port": 22, "netns": "%s", "pidfile": "%s", "host_veth": "%s"}%s\n' \
        "${names[$i]}" "${addrs[$i]}" "$PREFIX$((i + 1))" "$DIR/${names[$i]}/sshd.pid" \
        "$PREFIX$((i + 1))h" "$sep"
    done
    echo "]"
  } >"$DIR/nodes.json.tmp"
  mv "$DIR/nodes.json.tmp" "$DIR/nodes.json"
}

free_net() {  # the first 10.213.K (K 1..254) with no address on any host interface
  local used k
  used=$(ip -o -4 addr show | awk '{print $4}')
  for k in $(seq 1 254); do
    grep -q "^$NET\.$k\." <<<"$used" || { echo "$NET.$k"; return 0; }
  done
  return 1
}

# --- the safety route, before any node address exists -------------------------------------
routes=$(ip route show table main)  # (no grep -q in a pipe: SIGPIPE + pipefail)
if ! grep -q "^${SAFETY[*]} " <<<"$routes"; then
  ip route add "${SAFETY[@]}" metric 4000
  touch "$SHARED/safety-route"
fi

mkdir -p /run/sshd && chmod 755 /run/sshd   # sshd's privilege separation directory
[ -s "$DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C gridbridge-edge-client -f "$DIR/client_key"
cp "$DIR/client_key.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/client_key" "$DIR/authorized_keys"

# owner_of NETNS: the STATE_DIR of the fleet that made NETNS, from the marker edge-start.sh
# leaves in $SHARED, or else from the config path (-f) of an sshd running inside it; empty
# when neither names one.
owner_of() {
  local p cmd
  if [ -s "$SHARED/owner.$1" ]; then cat "$SHARED/owner.$1"; return 0; fi
  for p in $(ip netns pids "$1" 2>/dev/null); do
    [ "$(readlink -f "/proc/$p/exe" 2>/dev/null)" = "$SSHD" ] || continue
    # sshd rewrites its title ("sshd: /usr/sbin/sshd -f PATH ... [listener]"): one string
    cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
    if [[ $cmd =~ \ -f\ ([^ ]+)/sshd_config ]]; then dirname "${BASH_REMATCH[1]}"; return 0; fi
  done
}

# reclaim_if_orphan NETNS HOST_VETH: NETNS is not in this STATE_DIR's nodes.json. When the
# fleet that made it is gone (its STATE_DIR deleted, or its nodes.json no longer names NETNS:
# a test run killed before edge-stop.sh, a checkout removed under a running fleet), whatever
# still runs inside it is stopped and it is deleted, so this fleet can take the name. A
# namespace that a live fleet still records is left alone, and the start fails naming that
# fleet.
reclaim_if_orphan() {
  local ns=$1 hv=$2 owner rest
  owner=$(owner_of "$ns")
  if [ -n "$owner" ] && [ -s "$owner/nodes.json" ] \
      && nodes_tsv "$owner/nodes.json" | awk -F'\t' -v ns="$ns" '$4 == ns {f = 1} END {exit !f}'; then
    fail "netns $ns belongs to the fleet in $owner: stop it (edge-stop.sh $owner) or give this one another GB_EDGE_PREFIX"
  fi
  say "netns $ns is left over from a fleet that is gone (${owner:-no owner recorded}): reclaiming it"
  mapfile -t rest < <(ip netns pids "$ns" 2>/dev/null)
  if [ ${#rest[@]} -gt 0 ]; then
    kill -TERM "${rest[@]}" 2>/dev/null || true
    wait_gone "${rest[@]}" || { kill -KILL "${rest[@]}" 2>/dev/null || true; wait_gone "${rest[@]}" || true; }
  fi
  ip link del "$hv" 2>/dev/null || true
  ip netns del "$ns" || fail "cannot delete the left-over netns $ns"
  rm -f "$SHARED/owner.$ns"
}

# --- the nodes ----------------------------------------------------------------------------
for i in $(seq 1 "$N"); do
  name=edge$i ns=$PREFIX$i hv=${PREFIX}${i}h E=$DIR/edge$i
  mkdir -p "$E"
  if [ -e "/run/netns/$ns" ] && [ "${rec_ns[$name]:-}" != "$ns" ]; then
    reclaim_if_orphan "$ns" "$hv"
  fi
  if [ ! -e "/run/netns/$ns" ]; then
    ip link show dev "$hv" >/dev/null 2>&1 && fail "a link $hv exists without netns $ns: not ours"
    ip netns add "$ns"
  fi
  echo "$DIR" >"$SHARED/owner.$ns"
  names+=("$name") addrs+=("")
  if ip link show dev "$hv" >/dev/null 2>&1; then
    [ "${rec_ns[$name]:-}" = "$ns" ] || fail "link $hv exists but is not in $DIR/nodes.json"
    net=$(ip -o -4 addr show dev "$hv" | awk '$4 ~ /^10\.213\.[0-9]+\.1\/24$/ && !n {
      split($4, a, "."); n = a[1] "." a[2] "." a[3]} END {if (n) print n}')
    [ -n "$net" ] || net=$(free_net) || fail "no free /24 left in $NET.0.0/16"
  else
    net=$(free_net) || fail "no free /24 left in $NET.0.0/16"
    ip link add "$hv" type veth peer name eth0 netns "$ns"
  fi
  addr=$net.2
  addrs[i - 1]=$addr
  write_nodes   # recorded before anything else of it is made, so edge-stop.sh can undo it
  ip addr replace "$net.1/24" dev "$hv"
  ip link set "$hv" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route replace "$NET.0.0/24" via "$net.1" dev eth0   # the services net

  [ -s "$E/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C "gridbridge-$name-host" -f "$E/host_key"
  chmod 600 "$E/host_key"
  {
    echo "# $name of the edge test fleet in $DIR (written by edge-start.sh)"
    test_sshd_config "$addr" 22 "$E/host_key" "$E/sshd.pid" "$DIR/authorized_keys"
    printf '%s\n' "UseDNS no" "PrintMotd no" "ClientAliveCountMax 3" \
      "Subsystem sftp internal-sftp"
  } >"$E/sshd_config"
  if ! sshd_pid "$E/sshd.pid" "$ns" >/dev/null; then
    rm -f "$E/sshd.pid"
    "$SSHD" -t -f "$E/sshd_config" || fail "sshd refused $E/sshd_config"
    start_test_sshd "$SSHD" "$E/sshd_config" "$E/sshd.log" "$ns"
  fi
done

tmp=$DIR/known_hosts.tmp
: >"$tmp"
for i in "${!names[@]}"; do
  printf '%s %s\n' "${addrs[$i]}" "$(cut -d' ' -f1-2 "$DIR/${names[$i]}/host_key.pub")" >>"$tmp"
done
mv "$tmp" "$DIR/known_hosts"

for i in "${!names[@]}"; do
  name=${names[$i]} ns=$PREFIX$((i + 1))
  for _ in $(seq 100); do
    sshd_pid "$DIR/$name/sshd.pid" "$ns" >/dev/null && banner_ok "$ns" "${addrs[$i]}" && continue 2
    sleep 0.1
  done
  tail -5 "$DIR/$name/sshd.log" >&2 2>/dev/null || true
  fail "$name (${addrs[$i]}) did not come up; see $DIR/$name/sshd.log"
done
echo "$DIR/nodes.json"
