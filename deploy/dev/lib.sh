# shellcheck shell=bash
# lib.sh: what the scripts in deploy/dev share, each written once. Sourced, never run:
#
#   # shellcheck source-path=SCRIPTDIR source=lib.sh
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Defines functions and one variable (GB_SCRIPT, the script's name) and runs nothing else, so
# it holds under `set -euo pipefail` and without `-e` alike. A process is only ever signalled
# after its pid, read from a pidfile, is checked to run the expected binary: a stale pidfile
# whose pid was reused by another process leaves that process alone.
#
#   messages     say MESSAGE          "edge-start: MESSAGE" on stderr
#                fail MESSAGE         "edge-start: ERROR: MESSAGE", exit 1
#   packages     apt_install PKG...   apt-get install (root only), daemons kept from starting
#   pidfiles     pidfile_pid FILE BINARY  the pid in FILE, if it runs BINARY
#                running FILE BINARY      the same, as a test
#                stop_pidfile FILE BINARY TERM, up to 15 s, KILL; removes FILE
#   processes    alive PID / wait_gone PID...   (a zombie counts as gone)
#   S3           is_weed PID          the process runs SeaweedFS's weed
#                forward_pid FILE SCRIPT  the pid in FILE, if it runs python SCRIPT (tcp-forward.py)
#   test sshds   test_sshd_config ADDR PORT HOST_KEY PIDFILE AUTHORIZED_KEYS
#   edge fleet   nodes_tsv FILE / sshd_pid PIDFILE NETNS / banner_ok NETNS ADDR [PORT]

GB_SCRIPT=${0##*/}
GB_SCRIPT=${GB_SCRIPT%.sh}

say() { printf '%s: %s\n' "$GB_SCRIPT" "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

# apt_install PACKAGE...: install Debian packages with apt-get, quietly and without
# recommends; when the install fails (a stale package list), update once and try again.
# Root only. A temporary policy-rc.d (exit 101) keeps maintainer scripts from starting the
# system's daemons (sshd, munged, slurmd): the scripts start their own.
apt_install() {
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=600) made_policy=0 rc=0
  local -x DEBIAN_FRONTEND=noninteractive
  [ "$(id -u)" = 0 ] || fail "needs root to install $*"
  say "installing $*"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  "${apt[@]}" install --no-install-recommends "$@" >&2 \
    || { "${apt[@]}" update >&2 && "${apt[@]}" install --no-install-recommends "$@" >&2; } \
    || rc=$?
  if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  [ $rc = 0 ] || fail "apt-get install $* failed ($rc)"
}

# pidfile_pid PIDFILE BINARY: print the pid in PIDFILE when that process runs BINARY (both
# paths resolved); fail (status 1, nothing printed) when the file is missing or empty, the
# process is gone, or it runs something else.
pidfile_pid() {
  local pid
  pid=$(tr -dc 0-9 2>/dev/null <"$1") || return 1
  [ -n "$pid" ] || return 1
  [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$2")" ] || return 1
  echo "$pid"
}

running() { pidfile_pid "$1" "$2" >/dev/null; }

# stop_pidfile PIDFILE BINARY: stop the process PIDFILE names, if it runs BINARY (TERM, up to
# 15 s, then KILL), and remove PIDFILE either way.
stop_pidfile() {
  local pid
  pid=$(pidfile_pid "$1" "$2") || { rm -f "$1"; return 0; }
  say "stopping ${2##*/} (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

# alive PID: the process exists and is not a zombie.
alive() {
  [ -r "/proc/$1/stat" ] && ! awk '{exit ($3 == "Z") ? 0 : 1}' "/proc/$1/stat" 2>/dev/null
}

# wait_gone PID...: status 0 when every one is gone within 5 s.
wait_gone() {
  local p left
  for _ in $(seq 50); do
    left=0
    for p in "$@"; do alive "$p" && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# is_weed PID: the process runs a SeaweedFS weed binary (by its executable, or, once that was
# replaced on disk, by its command line). s3-stop.sh cannot know which weed s3-start.sh ran.
is_weed() {
  local exe
  [ -d "/proc/$1" ] || return 1
  exe=$(readlink "/proc/$1/exe" 2>/dev/null || true)
  [ "$(basename "${exe%% (deleted)}")" = "weed" ] && return 0
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q '^[^ ]*weed mini' && return 0
  return 1
}

# forward_pid PIDFILE SCRIPT: print the pid in PIDFILE when that process's command line runs
# SCRIPT (a python script: the executable is the interpreter, so its argv names it).
forward_pid() {
  local pid
  pid=$(tr -dc 0-9 2>/dev/null <"$1") || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$2" || return 1
  echo "$pid"
}

# test_sshd_config ADDR PORT HOST_KEY PIDFILE AUTHORIZED_KEYS: the sshd_config lines every
# test sshd shares (sshd-login-start.sh, edge-start.sh): keys only, root by key, no PAM, and
# room for the many sessions a test opens at once. Callers add their own lines after these.
test_sshd_config() {
  cat <<EOF
ListenAddress $1
Port $2
HostKey $3
PidFile $4
AuthorizedKeysFile $5
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
ClientAliveInterval 5
MaxSessions 32
MaxStartups 64
# The login shell's rc files run before every command (bash reads ~/.bashrc under sshd);
# start_test_sshd hides this machine's; should one still run "pyenv rehash", cap the wait
# for a lock left by a rehash killed mid-way (60 s per session otherwise).
SetEnv PYENV_REHASH_TIMEOUT=1
EOF
}

# start_test_sshd SSHD CONFIG LOG [NETNS]: start a test sshd (inside NETNS when given) in a
# mount namespace of its own where root's ~/.bashrc reads as empty. A node of the fleet or
# the test login host is another machine: this machine's dotfiles (a pyenv init, a rehash
# on every command, which a crashed node would kill mid-way, leaving its lock) are not its.
start_test_sshd() {
  local sshd=$1 conf=$2 log=$3 ns=${4:-} home
  home=$(getent passwd root | cut -d: -f6)
  local wrap=(unshare --mount --propagation slave)
  [ -n "$ns" ] && wrap=(ip netns exec "$ns")  # (which makes a mount namespace of its own)
  if [ -z "$ns" ] && ! unshare --mount --propagation slave true 2>/dev/null; then
    say "no mount namespace here (a container?): $sshd reads this machine's ~/.bashrc"
    "$sshd" -f "$conf" -E "$log" </dev/null 9>&-
    return
  fi
  # shellcheck disable=SC2016  # expanded by the inner sh
  "${wrap[@]}" sh -c 'rc=$1/.bashrc; shift
    if [ -f "$rc" ]; then mount --bind /dev/null "$rc" || exit 1; fi
    exec "$@"' start-test-sshd "$home" "$sshd" -f "$conf" -E "$log" </dev/null 9>&-
}

# --- the edge fleet (edge-start.sh, edge-ctl.sh, edge-stop.sh) ----------------------------

# nodes_tsv NODES_JSON: name address port netns pidfile host_veth, tab-separated, one node a
# line. nodes.json holds one node a line in the exact form edge-start.sh's write_nodes prints.
nodes_tsv() {
  sed -n 's/^ *{"name": "\([^"]*\)", "address": "\([^"]*\)", "port": \([0-9]*\), "netns": "\([^"]*\)", "pidfile": "\([^"]*\)", "host_veth": "\([^"]*\)"}.*$/\1\t\2\t\3\t\4\t\5\t\6/p' "$1"
}

netns_inode() { stat -L -c %i "/run/netns/$1" 2>/dev/null; }

# sshd_pid PIDFILE NETNS: the pid in PIDFILE, if it runs /usr/sbin/sshd inside network
# namespace NETNS.
sshd_pid() {
  local pid
  pid=$(pidfile_pid "$1" /usr/sbin/sshd) || return 1
  [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "net:[$(netns_inode "$2")]" ] || return 1
  echo "$pid"
}

# banner_ok NETNS ADDR [PORT]: an SSH banner from ADDR:PORT (default 22), read from inside
# NETNS, so it works during a partition too.
banner_ok() {
  local got
  # shellcheck disable=SC2016 # the inner script expands its own arguments, quoted
  got=$(ip netns exec "$1" timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && head -c 7 <&3' \
    banner "$2" "${3:-22}" 2>/dev/null) && [ "$got" = "SSH-2.0" ]
}
