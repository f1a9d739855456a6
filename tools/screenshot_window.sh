#!/usr/bin/env bash
# docs/window.png: the live window of `detector demo` with real detections, from a real run under Xvfb.
# Needs Xvfb, xdotool and ImageMagick (Debian: apt-get install xvfb xdotool imagemagick) and the .venv of the
# README's set-up. Usage: tools/screenshot_window.sh [OUT.png]   (default docs/window.png)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/window.png}
n=${XVFB_DISPLAY:-77}
while [ -e "/tmp/.X11-unix/X$n" ]; do n=$((n + 1)); done  # a free display number
export DISPLAY=":$n"
Xvfb "$DISPLAY" -screen 0 1280x800x24 -nolisten tcp 2>/dev/null &
xvfb=$!
demo=
cleanup() {
  [ -n "$demo" ] && kill "$demo" 2>/dev/null && wait "$demo" 2>/dev/null
  kill "$xvfb" 2>/dev/null && wait "$xvfb" 2>/dev/null
}
trap cleanup EXIT
for _ in $(seq 100); do [ -e "/tmp/.X11-unix/X$n" ] && break; sleep 0.1; done

.venv/bin/detector demo --duration 8 >/dev/null &
demo=$!
window=$(timeout 60 xdotool search --sync --name '^detector$' | head -n 1)
sleep 5  # the model warmed up, boxes on the picture, the overlay's rates settled
eval "$(xdotool getwindowgeometry --shell "$window")"  # X, Y, WIDTH, HEIGHT (no window manager: no frame)
mkdir -p "$(dirname "$out")"
import -window root -crop "${WIDTH}x${HEIGHT}+${X}+${Y}" +repage "$out"  # the screen, cut to the window
wait "$demo"
demo=
echo "$out: ${WIDTH}x${HEIGHT}, the window of \`detector demo\` at about 5 s"
