#!/usr/bin/env bash
# Idempotent: make sure a Chromium for tests/test_browser.py is installed (Debian's `chromium`).
# The tests drive it over the DevTools protocol from Python (no Node, no downloaded browsers).
# Prints the browser's path on success; exits non-zero when it cannot be installed.
set -euo pipefail

find_chromium() {
  for candidate in "${PENGUIN12_CHROMIUM:-}" chromium chromium-browser google-chrome; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if path=$(find_chromium); then
  echo "$path"
  exit 0
fi

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
  echo "setup-browser: chromium is missing and we are not root (no sudo)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: chromium is missing and apt-get is not available" >&2
  exit 1
fi
echo "setup-browser: installing chromium (Debian package)" >&2
# A lock keeps parallel test sessions from running apt at the same time.
exec 9>/tmp/penguin12-setup-browser.lock
flock 9
if ! find_chromium >/dev/null; then
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >&2
fi
find_chromium
