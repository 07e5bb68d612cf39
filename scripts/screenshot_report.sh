#!/usr/bin/env bash
# Look at a report as a person would: render its HTML to a PNG with headless
# Chromium (Debian's `chromium` package: apt-get install chromium), offline.
# Usage: scripts/screenshot_report.sh reports/summary-<stamp>.html [out.png] [height]
set -euo pipefail
html=$(realpath "$1")
png=${2:-${html%.html}.png}
height=${3:-3200}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "no Chromium found: apt-get install chromium" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The background-networking flags keep Chromium from dialling out on a closed network;
# the virtual time budget lets plotly finish drawing before the shot.
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1280,"$height" \
  --virtual-time-budget=15000 --screenshot="$png" "file://$html" >/dev/null 2>&1
echo "$png"
