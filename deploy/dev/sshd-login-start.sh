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
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -eq 1 ] || fail "usage: sshd-login-start.sh STATE_DIR"
DIR=$1
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SSHD=/usr/sbin/sshd

if [ ! -x $SSHD ]; then apt_install openssh-server; fi

if running "$DIR/sshd.pid" $SSHD && [ -s "$DIR/port" ]; then
  cat "$DIR/port"
  exit 0
fi

[ -s "$DIR/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C gridbridge-login-host -f "$DIR/host_key"
[ -s "$DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C gridbridge-tests -f "$DIR/client_key"
cp "$DIR/client_key.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys" "$DIR/host_key" "$DIR/client_key"
mkdir -p /run/sshd && chmod 755 /run/sshd   # sshd's privilege separation directory

PORT=$("${PYTHON:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
test_sshd_config 127.0.0.1 "$PORT" "$DIR/host_key" "$DIR/sshd.pid" "$DIR/authorized_keys" \
  > "$DIR/sshd_config"
$SSHD -t -f "$DIR/sshd_config" || fail "sshd refused the config"
start_test_sshd "$SSHD" "$DIR/sshd_config" "$DIR/sshd.log"
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1-2 "$DIR/host_key.pub")" > "$DIR/known_hosts"
for _ in $(seq 50); do
  running "$DIR/sshd.pid" $SSHD && "${PYTHON:-python3}" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
  sleep 0.1
done
running "$DIR/sshd.pid" $SSHD || fail "sshd did not start; see $DIR/sshd.log"
echo "$PORT" > "$DIR/port"
echo "$PORT"
