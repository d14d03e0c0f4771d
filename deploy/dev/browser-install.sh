#!/usr/bin/env bash
# browser-install.sh: Debian's Chromium and ChromeDriver for the HTML report's browser test
# (tests/cli/test_report_cli.py). Installs the packages chromium and chromium-driver with apt when
# /usr/bin/chromium or /usr/bin/chromedriver is missing (root only), and prints the paths of the
# two programs, one a line. Idempotent: with both present it installs nothing. Starts no
# process: the test starts Chromium headless itself, through ChromeDriver, and stops it.
set -euo pipefail
say() { printf 'browser-install: %s\n' "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
[ -x "$DRIVER" ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "needs root to install ${missing[*]}"
  say "installing ${missing[*]}"
  apt=(apt-get -q -y -o DPkg::Lock::Timeout=600)
  export DEBIAN_FRONTEND=noninteractive
  rc=0
  "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2 \
    || { "${apt[@]}" update >&2 && "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2; } \
    || rc=$?
  [ $rc = 0 ] || fail "apt-get install ${missing[*]} failed ($rc)"
fi
[ -x "$CHROMIUM" ] && [ -x "$DRIVER" ] || fail "$CHROMIUM or $DRIVER still missing"
echo "$CHROMIUM"
echo "$DRIVER"
