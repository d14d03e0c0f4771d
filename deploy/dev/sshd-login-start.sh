#!/usr/bin/env bash
# sshd-login-start.sh STATE_DIR: a real OpenSSH server on 127.0.0.1 standing in for a cluster's
# login node, for the tests that drive Slurm over SSH. Installs Debian's openssh-server if it is
# missing (root only), then starts its own sshd with its own config, host key and client key
# under STATE_DIR, never touching the system's sshd. Idempotent: a running one is reused.
#
# Leaves in STATE_DIR: port, client_key (+ .pub), known_hosts (the host key, for strict
# checking), sshd.pid, sshd.log. Prints the port. Stop with sshd-login-stop.sh STATE_DIR.
# $PYTHON (default python3) picks a free port.
set -euo pipefail
say() { printf 'sshd-login-start: %s\n' "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }
[ $# -eq 1 ] || fail "usage: sshd-login-start.sh STATE_DIR"
DIR=$1
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SSHD=/usr/sbin/sshd

running() {
  local pid exe
  pid=$(tr -dc 0-9 2>/dev/null <"$DIR/sshd.pid") || return 1
  [ -n "$pid" ] || return 1
  exe=$(readlink -f "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "$exe" = "$(readlink -f $SSHD)" ]
}

if [ ! -x $SSHD ]; then
  [ "$(id -u)" = 0 ] || fail "openssh-server is not installed and this is not root"
  say "installing openssh-server"
  policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    policy=1
  fi
  apt=(apt-get -q -y -o DPkg::Lock::Timeout=600)
  export DEBIAN_FRONTEND=noninteractive
  rc=0
  "${apt[@]}" install --no-install-recommends openssh-server >&2 \
    || { "${apt[@]}" update >&2 && "${apt[@]}" install --no-install-recommends openssh-server >&2; } \
    || rc=$?
  [ $policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || fail "apt-get install openssh-server failed ($rc)"
fi

if running && [ -s "$DIR/port" ]; then
  cat "$DIR/port"
  exit 0
fi

[ -s "$DIR/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C gridbridge-login-host -f "$DIR/host_key"
[ -s "$DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C gridbridge-tests -f "$DIR/client_key"
cp "$DIR/client_key.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys" "$DIR/host_key" "$DIR/client_key"
mkdir -p /run/sshd && chmod 755 /run/sshd   # sshd's privilege separation directory

PORT=$("${PYTHON:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$DIR/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $DIR/host_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
ClientAliveInterval 5
MaxSessions 32
MaxStartups 64
# A login shell's rc files run before every command (bash reads ~/.bashrc under sshd). Where
# they run "pyenv rehash", a rehash killed mid-way leaves a lock that makes every later
# session wait 60 s: cap that wait for the test sshds.
SetEnv PYENV_REHASH_TIMEOUT=1
EOF
$SSHD -t -f "$DIR/sshd_config" || fail "sshd refused the config"
$SSHD -f "$DIR/sshd_config" -E "$DIR/sshd.log" </dev/null
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1-2 "$DIR/host_key.pub")" > "$DIR/known_hosts"
for _ in $(seq 50); do
  running && "${PYTHON:-python3}" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
  sleep 0.1
done
running || fail "sshd did not start; see $DIR/sshd.log"
echo "$PORT" > "$DIR/port"
echo "$PORT"
