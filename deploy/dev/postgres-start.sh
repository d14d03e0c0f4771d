#!/usr/bin/env bash
# postgres-start.sh DIR: a real PostgreSQL on loopback, for the `postgres` tests.
#
# Installs Debian's postgresql (once, as root), initialises a cluster in SRV/data (below), and starts
# it listening on 127.0.0.1:PORT and a Unix socket in SRV/run, nowhere else. Idempotent: with
# the server up it only checks and prints. Prints one line on stdout, the server's URL without
# its password (postgresql://gridbridge@127.0.0.1:PORT/); the password is in DIR/password
# (mode 0600). Stop it with postgres-stop.sh DIR, which stops it by the pid in DIR/postgres.pid.
#
#   SRV/data        the cluster (owned by the server's account, mode 0700)
#   SRV/run         its Unix socket; SRV/postgres.log
#   DIR/port        the port it was given (GB_PG_PORT, default 54329), kept across restarts
#   DIR/postgres.pid, DIR/password, DIR/server-dir (where SRV is)
#
# SRV is DIR when the server's account can reach DIR; as root with DIR under a folder only
# root may enter (a clone in /root, or under `mktemp -d`), it is a folder of the server's own
# under /var/tmp, named after DIR, so that any checkout can run the tests.
#
# Facts this script is built on (PostgreSQL 15 from Debian 12, no systemd):
#  - the server refuses to run as root: as root it runs as the `postgres` account the package
#    creates, which must be able to reach DIR (so DIR's parents must be traversable);
#  - initdb's superuser is `gridbridge`, with a generated password (scram-sha-256 over TCP,
#    peer on the socket): nothing is trusted on the port;
#  - fsync and synchronous_commit are off: a throwaway test cluster, not a store to keep;
#  - daemons must not inherit our lock fd (else the next run blocks): 9>&- on the start.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# = 1 ] || { echo "usage: postgres-start.sh DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(readlink -f "$1")
PORT=$(cat "$DIR/port" 2>/dev/null || echo "${GB_PG_PORT:-54329}")
[[ $PORT =~ ^[1-9][0-9]{3,4}$ ]] || fail "GB_PG_PORT must be a port number"

exec 9>"$DIR/.lock"
flock -w 120 9 || fail "another postgres-start/postgres-stop holds $DIR/.lock"

# 1. packages ---------------------------------------------------------------------------
bindir() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1; }
if [ -z "$(bindir)" ]; then apt_install postgresql; fi
BIN=$(bindir)
[ -x "$BIN/postgres" ] || fail "no PostgreSQL server under /usr/lib/postgresql"

# 2. who runs it: never root ------------------------------------------------------------
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || fail "no postgres account (the postgresql package makes it)"
  SERVER_USER=postgres
  as_server() { runuser -u postgres -- "$@"; }
  chown postgres: "$DIR"
else
  SERVER_USER=$(id -un)
  as_server() { "$@"; }
fi
chmod 700 "$DIR"
SRV=$DIR
if ! as_server test -w "$DIR"; then
  [ "$(id -u)" = 0 ] || fail "cannot write $DIR"
  SRV=/var/tmp/gridbridge-postgres-$(printf %s "$DIR" | sha256sum | cut -c1-12)
  mkdir -p "$SRV"
  chown postgres: "$SRV"
  chmod 700 "$SRV"
  as_server test -w "$SRV" || fail "the server's account cannot write $SRV"
fi
echo "$SRV" >"$DIR/server-dir"

PIDFILE=$DIR/postgres.pid
url() { echo "postgresql://gridbridge@127.0.0.1:$PORT/"; }
if running "$PIDFILE" "$BIN/postgres"; then url; exit 0; fi

# 3. the cluster, once --------------------------------------------------------------------
if [ ! -s "$SRV/data/PG_VERSION" ]; then
  rm -rf "$SRV/data"
  umask 077
  [ -s "$DIR/password" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/password"
  as_server tee "$SRV/.pwfile" <"$DIR/password" >/dev/null
  say "initdb $SRV/data"
  as_server "$BIN/initdb" -D "$SRV/data" -U gridbridge --pwfile="$SRV/.pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
    || fail "initdb failed: $(tail -n 5 "$DIR/initdb.log")"
  rm -f "$SRV/.pwfile"
  # peer on the socket maps the server's own account to the gridbridge superuser
  printf 'local all all peer map=self\nhost all all 127.0.0.1/32 scram-sha-256\n' \
    | as_server tee "$SRV/data/pg_hba.conf" >/dev/null
  printf 'self %s gridbridge\nself root gridbridge\n' "$SERVER_USER" \
    | as_server tee "$SRV/data/pg_ident.conf" >/dev/null
  chmod 600 "$DIR/password"
fi
echo "$PORT" >"$DIR/port"
as_server mkdir -p "$SRV/run"

# 4. the server ---------------------------------------------------------------------------
t0=$(date +%s%N)
say "starting postgres on 127.0.0.1:$PORT"
as_server "$BIN/pg_ctl" -D "$SRV/data" -l "$SRV/postgres.log" -w -t 60 start -o \
  "-c listen_addresses=127.0.0.1 -p $PORT -k $SRV/run -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  >/dev/null 9>&- || fail "postgres did not start: $(tail -n 5 "$SRV/postgres.log" 2>/dev/null)"
head -n 1 "$SRV/data/postmaster.pid" >"$PIDFILE"
running "$PIDFILE" "$BIN/postgres" || fail "postgres is not running; see $SRV/postgres.log"
say "ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
url
