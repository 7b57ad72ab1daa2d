#!/usr/bin/env bash
# A headless browser for factorflow's report test (CI and developers).
#
#   bash scripts/chromium.sh          install Debian's chromium if no chromium is on PATH
#                                     (root, apt-get) and print
#                                       export FACTORFLOW_TEST_BROWSER=/usr/bin/chromium
#   bash scripts/chromium.sh path     print the browser's path only (nothing installed;
#                                     exit 1 when there is none)
#
#   eval "$(bash scripts/chromium.sh)"   # then: .venv/bin/python -m pytest tests/api/test_report.py
#
# Progress goes to stderr; stdout carries only the export line, so it can be eval'ed.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }
die() { echo "chromium.sh: error: $*" >&2; exit 1; }

find_browser() {
  local b
  for b in chromium chromium-browser; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
  done
  return 1
}

case "${1:-install}" in
  path)
    find_browser || exit 1
    ;;
  install)
    if ! browser="$(find_browser)"; then
      [ "$(id -u)" = 0 ] || die "chromium is missing and installing it needs root (apt-get install chromium)"
      command -v apt-get >/dev/null 2>&1 || die "chromium is missing and this is not a Debian/Ubuntu system"
      start=$(date +%s)
      log "installing Debian's chromium (apt-get; once per machine)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -q chromium >&2 || { apt-get update -q >&2 && apt-get install -y -q chromium >&2; } \
        || die "apt-get install chromium failed"
      browser="$(find_browser)" || die "chromium installed but not found on PATH"
      log "installed $browser in $(( $(date +%s) - start )) s"
    fi
    echo "export FACTORFLOW_TEST_BROWSER=$browser"
    ;;
  *)
    die "unknown command '$1' (install | path)"
    ;;
esac
