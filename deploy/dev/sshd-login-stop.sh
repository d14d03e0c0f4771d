#!/usr/bin/env bash
# sshd-login-stop.sh STATE_DIR: stop the sshd that sshd-login-start.sh started there, by the pid
# in its pidfile after checking that it runs sshd (TERM, then KILL after 15 s). Idempotent.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DIR=${1:?usage: sshd-login-stop.sh STATE_DIR}
stop_pidfile "$DIR/sshd.pid" /usr/sbin/sshd
rm -f "$DIR/port"
exit 0
