#!/usr/bin/env bash
# browser-install.sh: Debian's Chromium and ChromeDriver for the HTML report's browser test
# (tests/cli/test_report_cli.py). Installs the packages chromium and chromium-driver with apt when
# /usr/bin/chromium or /usr/bin/chromedriver is missing (root only), and prints the paths of the
# two programs, one a line. Idempotent: with both present it installs nothing. Starts no
# process: the test starts Chromium headless itself, through ChromeDriver, and stops it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
[ -x "$DRIVER" ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
if [ ! -x "$CHROMIUM" ] || [ ! -x "$DRIVER" ]; then fail "$CHROMIUM or $DRIVER still missing"; fi
echo "$CHROMIUM"
echo "$DRIVER"
