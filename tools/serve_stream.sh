#!/usr/bin/env bash
# Serve a video file as a live HTTP stream on 127.0.0.1, looping at its own frame rate, to try
# `detector live --source http://127.0.0.1:8554/live.ts` without a camera. ffmpeg serves one client;
# kill it (Ctrl-C) and start it again to see the app reconnect.
set -euo pipefail
video=${1:-detector/assets/people.mp4}
port=${2:-8554}
echo "serving $video at http://127.0.0.1:$port/live.ts"
exec ffmpeg -v error -re -stream_loop -1 -i "$video" -c copy -f mpegts -listen 1 "http://127.0.0.1:$port/live.ts"
