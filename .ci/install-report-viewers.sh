#!/usr/bin/env bash
# Install xunit-viewer (the npm JUnit viewer) at a pinned version into a cache directory,
# so that tests/reports/test_viewers.py renders outloop's junit.xml with it.
#
# Idempotent and cached: a rerun with the same pin does nothing. Prints, as its last
# line, the path of the xunit-viewer executable.
#
#   bash .ci/install-report-viewers.sh
#   OUTLOOP_VIEWERS_DIR=/opt/viewers bash .ci/install-report-viewers.sh
set -euo pipefail

XUNIT_VIEWER_VERSION=10.6.1

root="${OUTLOOP_VIEWERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outloop-ci/viewers}"
dir="$root/xunit-viewer"
bin="$dir/node_modules/.bin/xunit-viewer"
command -v npm >/dev/null 2>&1 || { echo "npm is needed to install xunit-viewer" >&2; exit 1; }
if [ -f "$root/xunit-viewer.stamp" ] && [ "$(cat "$root/xunit-viewer.stamp")" = "$XUNIT_VIEWER_VERSION" ] && [ -x "$bin" ]; then
  echo "== xunit-viewer $XUNIT_VIEWER_VERSION (cached)" >&2
else
  echo "== installing xunit-viewer@$XUNIT_VIEWER_VERSION" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "xunit-viewer@$XUNIT_VIEWER_VERSION" >&2
  echo "$XUNIT_VIEWER_VERSION" >"$root/xunit-viewer.stamp"
fi
echo "$bin"
