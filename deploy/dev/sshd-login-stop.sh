#!/usr/bin/env bash
# sshd-login-stop.sh STATE_DIR: stop the sshd that sshd-login-start.sh started there, by the pid
# in its pidfile after checking that it runs sshd. Idempotent.
set -uo pipefail
DIR=${1:?usage: sshd-login-stop.sh STATE_DIR}
f=$DIR/sshd.pid
pid=$(tr -dc 0-9 2>/dev/null <"$f") || exit 0
[ -n "$pid" ] || exit 0
if [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f /usr/sbin/sshd)" ]; then
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$f" "$DIR/port"
exit 0
